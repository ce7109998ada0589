// Package password knows what a homeserver accepts as a password: the
// server's policy (Synapse's password_config.policy), the hard limits every
// server has, and how to generate passwords that meet both and survive being
// pasted into CSV, YAML and shells.
package password

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

const (
	// MaxBytes is the longest password any supported homeserver accepts:
	// Synapse refuses more than 512 characters and Dendrite more than 512
	// bytes; bytes is the stricter of the two.
	MaxBytes = 512

	// BcryptBytes is how much of a password bcrypt, the hash both Synapse and
	// Dendrite use, actually reads. A supplied password may be longer (it is
	// the admin's choice and the server accepts it), but a generated one never
	// is: the bytes past the 72nd would add length without adding strength.
	BcryptBytes = 72
)

// Policy is a homeserver's password policy. The character classes are ASCII,
// as Synapse checks them: a symbol is anything outside [a-zA-Z0-9], lengths
// are counted in characters (Unicode code points).
//
// It is the one policy type of the program: the config package fills it
// from Synapse's password_config.policy and the matrix client from the
// server's /password_policy answer, so that policies from both merge without
// conversions. This package imports nothing of the program's for that reason.
type Policy struct {
	MinLength        int
	RequireDigit     bool
	RequireSymbol    bool
	RequireLowercase bool
	RequireUppercase bool
}

// Error is a password that the server would refuse. Error() is the problem
// alone, without the password; Hint says what to do.
type Error struct {
	Message string
	Hint    string
}

func (e *Error) Error() string { return e.Message }

// Check reports every rule pw breaks in one error, so that an admin fixing a
// roster does not have to go round once per rule. The password itself never
// appears in the error.
//
// Besides the policy, Check enforces what every server refuses whatever its
// policy: an empty password, more than MaxBytes, a NUL byte, and invalid
// UTF-8 (a JSON encoder would silently replace the bad bytes, so the account
// would get a password other than the one handed off). A password longer
// than BcryptBytes passes: the server accepts it.
func (p Policy) Check(pw string) error {
	var size []string // "is ..." clauses: length and encoding
	switch {
	case pw == "":
		size = append(size, "is empty")
	case len(pw) > MaxBytes:
		size = append(size, fmt.Sprintf("is %d bytes, more than the %d a homeserver accepts", len(pw), MaxBytes))
	}
	if strings.IndexByte(pw, 0) >= 0 {
		size = append(size, "contains a NUL byte")
	}
	if !utf8.ValidString(pw) {
		size = append(size, "is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(pw); pw != "" && n < p.MinLength {
		size = append(size, fmt.Sprintf("is %s, the server requires at least %d", plural(n, "character"), p.MinLength))
	}

	var missing []string
	if pw != "" {
		c := classesOf(pw)
		if p.RequireDigit && !c.digit {
			missing = append(missing, "no digit")
		}
		if p.RequireSymbol && !c.symbol {
			missing = append(missing, "no symbol")
		}
		if p.RequireLowercase && !c.lower {
			missing = append(missing, "no lowercase letter")
		}
		if p.RequireUppercase && !c.upper {
			missing = append(missing, "no uppercase letter")
		}
	}

	if len(size) == 0 && len(missing) == 0 {
		return nil
	}
	msg := "password " + strings.Join(size, ", ")
	switch {
	case len(size) == 0:
		msg = "password has " + joinAnd(missing)
	case len(missing) > 0:
		msg += ", and it has " + joinAnd(missing)
	}
	hint := "change the password, or leave it empty to have one generated"
	if p != (Policy{}) {
		hint = "the server's policy: " + p.String() + "; " + hint
	}
	return &Error{Message: msg, Hint: hint}
}

// Merge returns the stricter of both policies, for when the server publishes
// one and the operator configures another.
func (p Policy) Merge(q Policy) Policy {
	return Policy{
		MinLength:        max(p.MinLength, q.MinLength),
		RequireDigit:     p.RequireDigit || q.RequireDigit,
		RequireSymbol:    p.RequireSymbol || q.RequireSymbol,
		RequireLowercase: p.RequireLowercase || q.RequireLowercase,
		RequireUppercase: p.RequireUppercase || q.RequireUppercase,
	}
}

// String describes the policy for --help and the run summary, e.g.
// "at least 10 characters, with a digit and an uppercase letter".
func (p Policy) String() string {
	var with []string
	if p.RequireDigit {
		with = append(with, "a digit")
	}
	if p.RequireSymbol {
		with = append(with, "a symbol")
	}
	if p.RequireLowercase {
		with = append(with, "a lowercase letter")
	}
	if p.RequireUppercase {
		with = append(with, "an uppercase letter")
	}
	switch {
	case p.MinLength > 0 && len(with) > 0:
		return fmt.Sprintf("at least %d characters, with %s", p.MinLength, joinAnd(with))
	case p.MinLength > 0:
		return fmt.Sprintf("at least %d characters", p.MinLength)
	case len(with) > 0:
		return "with " + joinAnd(with)
	default:
		return "no requirements"
	}
}

// classes records which of the policy's character classes a string has.
type classes struct{ digit, symbol, lower, upper bool }

func classesOf(s string) classes {
	var c classes
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case '0' <= b && b <= '9':
			c.digit = true
		case 'a' <= b && b <= 'z':
			c.lower = true
		case 'A' <= b && b <= 'Z':
			c.upper = true
		default:
			// Every byte of a multi-byte character is outside [a-zA-Z0-9],
			// and so is the character: Synapse counts it as a symbol too.
			c.symbol = true
		}
	}
	return c
}

func (p Policy) satisfiedBy(s string) bool {
	c := classesOf(s)
	return (!p.RequireDigit || c.digit) && (!p.RequireSymbol || c.symbol) &&
		(!p.RequireLowercase || c.lower) && (!p.RequireUppercase || c.upper)
}

// joinAnd joins "a", "b", "c" as "a, b and c".
func joinAnd(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

// plural formats a count with its noun: "1 character", "6 characters".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
