package roster

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// column is one of the values a roster gives for a user.
type value struct {
	text      string
	line, col int
	set       bool // present in the file (a YAML key may be missing)
	bad       bool // already reported as the wrong kind of YAML node
}

// entry is one user's record before validation.
type entry struct {
	line, col     int // where the record starts
	fields        [numColumns]value
	rooms         []value
	localpartTypo bool   // the localpart is missing, but a problem already says why
	derivedFrom   string // with --columns: the address's local part the localpart was made from
}

// accept validates an entry and, when it and the lines it came from have no
// problem (the error count is still before), counts the user and emits it.
// It reports whether reading should stop.
func (r *run) accept(e *entry, before int) bool {
	u := User{Line: e.line}
	r.localpart(e, &u)
	r.displayName(e.fields[colDisplayName], &u)
	r.email(e.fields[colEmail], &u)
	r.admin(e.fields[colAdmin], &u)
	r.userType(e.fields[colUserType], &u)
	r.password(e.fields[colPassword], &u)
	r.rooms(e.rooms, &u)
	r.recipient(e.fields[colRecipient], &u)
	r.sso(e, &u)
	if r.errs.Total != before {
		return r.stopAtFirst
	}
	r.stats.Users++
	if u.Original != "" {
		r.stats.Lowercased++
	}
	if r.emit != nil {
		if err := r.emit(u); err != nil {
			r.emitErr = err
			return true
		}
	}
	return false
}

// reported tells whether a CSV value holds bytes that input has already
// reported (invalid UTF-8, NUL): checking it again would only repeat that.
// YAML values are produced by the YAML parser, whose escapes can make a NUL
// the file does not contain, so they are always checked.
func (r *run) reported(v value) bool {
	if v.bad {
		return true
	}
	return r.format == FormatCSV && (!utf8.ValidString(v.text) || strings.IndexByte(v.text, 0) >= 0)
}

func (r *run) bad(v value, msg, hint string) {
	r.problem(v.line, v.col, msg, hint)
}

func (r *run) localpart(e *entry, u *User) {
	v := e.fields[colLocalpart]
	if !v.set {
		if !e.localpartTypo {
			r.problem(e.line, e.col, "this user has no localpart", `add one, e.g. "localpart: alice"`)
		}
		return
	}
	if r.reported(v) {
		return
	}
	written := strings.TrimSpace(v.text)
	lower, msg, hint := checkLocalpart(written, r.opts.ServerName)
	if msg != "" {
		if r.format == FormatCSV && strings.HasPrefix(written, "#") {
			hint += ` (a line starting with "#" is not a comment in CSV: delete the line)`
		}
		r.bad(v, msg, hint)
		return
	}
	u.Localpart = lower
	if lower != written {
		u.Original = written
	}
	if e.derivedFrom != "" && e.derivedFrom != lower {
		u.Original = e.derivedFrom
	}
	if first, dup := r.seen.add(lower, e.line); dup && e.derivedFrom != "" {
		r.bad(v, fmt.Sprintf("two people get the localpart %s: line %d and line %d (from %s)", quoteShort(lower), first, e.line, quoteShort(e.derivedFrom)),
			r.opts.Columns.overrideHint())
	} else if dup {
		msg := fmt.Sprintf("duplicate localpart %s: already %s", quoteShort(lower), r.at(first))
		if u.Original != "" {
			msg = fmt.Sprintf("duplicate localpart %s (written %s): already %s", quoteShort(lower), quoteShort(written), r.at(first))
		}
		r.bad(v, msg, "each user needs a different localpart, and capitals do not count (Alice and alice are the same account): remove or rename one")
	}
}

const localpartHint = "use only a-z, 0-9 and . _ = - / +"

// checkLocalpart lowercases a localpart and checks it against the Matrix
// rules (PROTOCOL.md "Localparts"). msg is "" when it is valid.
func checkLocalpart(s, server string) (lower, msg, hint string) {
	if s == "" {
		return "", "the localpart is empty", "every user needs one, e.g. alice"
	}
	if s[0] == '@' {
		name, _, _ := strings.Cut(s[1:], ":")
		if name != "" {
			return "", fmt.Sprintf("%s is a full user ID, not a localpart", quoteShort(s)), "write only the localpart: " + strings.ToLower(name)
		}
	}
	if name, _, ok := strings.Cut(s, "@"); ok && name != "" {
		return "", fmt.Sprintf("%s is an email address, not a localpart", quoteShort(s)),
			"write only the localpart (such as " + strings.ToLower(name) + ") and put the address in the email column"
	}
	var b []byte // the lowercased copy, made only when needed
	digits := true
	for i, pos := 0, 1; i < len(s); pos++ {
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c >= 'a' && c <= 'z', c == '.', c == '_', c == '=', c == '-', c == '/', c == '+':
			digits = false
		case c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z':
			digits = false
			if b == nil {
				b = []byte(s)
			}
			b[i] = byte(c) + 'a' - 'A'
		default:
			return "", fmt.Sprintf("%s is not a valid localpart: %s at position %d", quoteShort(s), describe(c), pos), localpartHint
		}
		i += size
	}
	lower = s
	if b != nil {
		lower = string(b)
	}
	switch {
	case lower[0] == '_':
		return "", fmt.Sprintf("%s starts with _", quoteShort(s)), "localparts starting with _ are reserved for bridges and services: choose another name"
	case digits:
		return "", fmt.Sprintf("%s is all digits", quoteShort(s)), "numeric localparts are reserved for guest accounts: add a letter"
	case server != "" && len(lower)+len(server)+2 > 255:
		return "", fmt.Sprintf("%s is too long: the user ID @%s:%s would be %d bytes", quoteShort(s), quoteShortBare(lower), server, len(lower)+len(server)+2),
			fmt.Sprintf("a user ID has at most 255 bytes: shorten the localpart to at most %d characters", 253-len(server))
	case len(lower)+3 > 255:
		return "", fmt.Sprintf("%s is too long: %d characters", quoteShort(s), len(lower)),
			"a user ID (@localpart:server) has at most 255 bytes: shorten the localpart to at most 252 characters"
	}
	return lower, "", ""
}

// describe names a character for a message, so that invisible ones show.
func describe(c rune) string {
	switch {
	case c == ' ':
		return "space"
	case c == '\t':
		return "tab"
	case c == '\n' || c == '\r':
		return "line break"
	case c == utf8.RuneError:
		return "invalid UTF-8"
	case unicode.IsControl(c):
		return fmt.Sprintf("control character U+%04X", c)
	case unicode.IsSpace(c) || !unicode.IsPrint(c):
		return fmt.Sprintf("invisible character U+%04X", c)
	}
	return strconv.Quote(string(c))
}

// firstControl finds the first control character in s.
func firstControl(s string) (c rune, pos int, ok bool) {
	pos = 1
	for _, c := range s {
		if unicode.IsControl(c) || c == utf8.RuneError {
			return c, pos, true
		}
		pos++
	}
	return 0, 0, false
}

// maxDisplayName is Synapse's limit (MAX_DISPLAYNAME_LEN), counted in bytes
// here, which is stricter than Synapse's characters.
const maxDisplayName = 256

func (r *run) displayName(v value, u *User) {
	if r.reported(v) {
		return
	}
	s := strings.TrimSpace(v.text)
	if c, pos, ok := firstControl(s); ok {
		r.bad(v, fmt.Sprintf("the display name has a %s at position %d", describe(c), pos),
			"write the display name on one line, without tabs or control characters")
		return
	}
	if len(s) > maxDisplayName {
		r.bad(v, fmt.Sprintf("the display name is %d bytes long", len(s)),
			fmt.Sprintf("shorten it to at most %d bytes", maxDisplayName))
		return
	}
	u.DisplayName = s
}

func (r *run) email(v value, u *User) {
	s := strings.TrimSpace(v.text)
	if s == "" || r.reported(v) {
		return
	}
	var why string
	local, domain, _ := strings.Cut(s, "@")
	switch {
	case !strings.Contains(s, "@"):
		why = `it has no "@"`
	case strings.Count(s, "@") > 1:
		why = `it has more than one "@"`
	case local == "" || domain == "":
		why = `something is missing around the "@"`
	default:
		for i, c := range s {
			if unicode.IsSpace(c) || unicode.IsControl(c) {
				why = fmt.Sprintf("%s at position %d", describe(c), utf8.RuneCountInString(s[:i])+1)
				break
			}
		}
	}
	if why != "" {
		r.bad(v, fmt.Sprintf("%s is not an email address: %s", quoteShort(s), why),
			"write it as name@example.org, or leave it empty")
		return
	}
	u.Email = s
}

func (r *run) admin(v value, u *User) {
	s := strings.TrimSpace(v.text)
	if r.reported(v) {
		return
	}
	switch strings.ToLower(s) {
	case "", "false", "no", "0":
	case "true", "yes", "1":
		u.Admin = true
	default:
		r.bad(v, fmt.Sprintf("admin must be true or false, not %s", quoteShort(s)),
			"write true or false (or yes/no, 1/0); empty means false")
	}
}

func (r *run) userType(v value, u *User) {
	if r.reported(v) {
		return
	}
	s := strings.TrimSpace(v.text)
	if c, pos, ok := firstControl(s); ok {
		r.bad(v, fmt.Sprintf("the user_type has a %s at position %d", describe(c), pos),
			"write a plain word such as bot, or leave it empty for a normal user")
		return
	}
	u.UserType = s
}

// password checks a supplied password without ever putting it in a message.
func (r *run) password(v value, u *User) {
	s := v.text
	if s == "" || r.reported(v) {
		return
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	switch {
	case unicode.IsSpace(first) || unicode.IsSpace(last):
		r.bad(v, "the password begins or ends with white space",
			"remove the spaces (they are too easy to lose), or leave the password empty to have one generated")
		return
	case strings.IndexByte(s, 0) >= 0:
		r.bad(v, "the password contains a NUL character", "homeservers refuse it: choose another password")
		return
	}
	if r.opts.CheckPassword != nil {
		if err := r.opts.CheckPassword(s); err != nil {
			r.bad(v, err.Error(), "choose a password the server accepts, or leave it empty to have one generated")
			return
		}
	}
	u.Password = s
}

const roomHint = "write a room ID (!id:server) or alias (#alias:server); separate rooms with spaces or ;"

// splitRooms splits a rooms cell, "!a:hs #b:hs;#c:hs", into rooms that each
// point at the cell.
func splitRooms(v value) []value {
	var out []value
	for _, s := range strings.FieldsFunc(v.text, func(c rune) bool { return c == ';' || unicode.IsSpace(c) }) {
		out = append(out, value{text: s, line: v.line, col: v.col, set: true})
	}
	return out
}

func (r *run) rooms(vs []value, u *User) {
	for _, v := range vs {
		if r.reported(v) {
			continue
		}
		s := strings.TrimSpace(v.text)
		if s == "" {
			continue
		}
		if strings.Contains(s, ",") {
			r.bad(v, fmt.Sprintf("room %s contains a comma", quoteShort(s)), "separate rooms with spaces or ;")
			continue
		}
		if i := strings.IndexFunc(s, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }); i >= 0 {
			c, _ := utf8.DecodeRuneInString(s[i:])
			r.bad(v, fmt.Sprintf("room %s contains a %s", quoteShort(s), describe(c)), roomHint)
			continue
		}
		if s[0] != '!' && s[0] != '#' {
			r.bad(v, fmt.Sprintf("room %s is not a room ID or alias", quoteShort(s)), roomHint)
			continue
		}
		if i := strings.IndexByte(s, ':'); i < 2 || i == len(s)-1 {
			r.bad(v, fmt.Sprintf("room %s has no server name", quoteShort(s)), roomHint)
			continue
		}
		u.Rooms = append(u.Rooms, s)
	}
}

func (r *run) recipient(v value, u *User) {
	s := strings.TrimSpace(v.text)
	if s == "" || r.reported(v) {
		return
	}
	if c, pos, ok := firstControl(s); ok {
		r.bad(v, fmt.Sprintf("the recipient has a %s at position %d", describe(c), pos),
			"write the user's public key on one line: age1... or ssh-ed25519 AAAA...")
		return
	}
	if r.opts.CheckRecipient != nil {
		if err := r.opts.CheckRecipient(s); err != nil {
			r.bad(v, err.Error(), "write the user's age public key (age1...) or SSH public key (ssh-ed25519 ...), or leave it empty")
			return
		}
	}
	u.Recipient = s
}

// quoteShort quotes a value for a message: escaped, so that nothing in a
// roster can drive the terminal, and cut short, so that a huge value cannot
// flood it.
func quoteShort(s string) string {
	return strconv.Quote(short(s))
}

// quoteShortBare is quoteShort without the quotes.
func quoteShortBare(s string) string {
	q := quoteShort(s)
	return q[1 : len(q)-1]
}

func short(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	i := 0
	for n := 0; n < max; n++ {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i] + "…"
}

// synonyms are names people give columns, mapped to the one they meant.
