package password

import (
	"fmt"
	"io"
	"math"
	"math/big"
	"strings"
	"sync"

	gopassword "github.com/sethvargo/go-password/password"
)

const (
	// Symbols is the symbol set of generated passwords. Each of them is
	// literal in every place a password gets pasted: a CSV field (no comma,
	// quote or line break), a YAML plain scalar (none is an indicator
	// character or starts a comment, and none forms ": " or " #"), a shell
	// word (no glob, quote, expansion, history, redirection or comment
	// character; not '^' either, which is a pipe in the Bourne shell and a
	// glob in zsh), a URL (all three are unreserved in RFC 3986), sed, printf
	// and INI files ('%', '=' and '/' are not). It is small on purpose: three
	// symbols instead of thirty cost 0.2 bits per character, which a longer
	// password buys back, while one unsafe symbol costs a broken login.
	Symbols = "-._"

	// DefaultLength is the length the CLI generates unless told otherwise:
	// 144 bits (143.6 with every class required), beyond any guessing, online
	// or offline.
	DefaultLength = 24

	// MinGeneratedLength is the shortest password the generator makes.
	// Dendrite refuses passwords under 8 bytes, and below that no random
	// password is worth handing off.
	MinGeneratedLength = 8
)

const (
	lowerLetters = "abcdefghijklmnopqrstuvwxyz"
	upperLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	digits       = "0123456789"
	letters      = lowerLetters + upperLetters
	alphabet     = letters + digits + Symbols

	// maxAttempts bounds the draw-and-reject loop. Even the least likely
	// case (8 characters with all four classes required) is accepted 17
	// times in 100, so 1000 rejections in a row (odds about 1 in 10^81) mean
	// the random source is broken, not that the run was unlucky.
	maxAttempts = 1000
)

// Generator makes random passwords that meet a Policy. It is safe for
// concurrent use.
//
// How it draws: the first character is a letter, drawn uniformly from the 52
// letters; each of the others is drawn uniformly from the full alphabet
// (letters, digits and Symbols); a draw that misses a class the policy
// requires is thrown away and drawn again. Both draws go through
// go-password with repeats allowed, which picks each character with
// crypto/rand.Int, free of modulo bias.
//
// Why a letter first: a YAML parser reads a plain scalar that starts with a
// digit or '.' as a number when it can (1e10, 0x1f, .inf), and spreadsheets
// read a leading '-' as a formula; a letter rules both out.
//
// Why draw and reject rather than go-password's numDigits/numSymbols: those
// fix how many digits and symbols a password has (exactly one of each, say)
// and scatter them among letters, which makes some passwords far likelier
// than others and tells an attacker the shape of every password. Rejection
// keeps the result uniform over every password that meets the policy, so
// EntropyBits is simply the logarithm of how many there are, and it costs
// little: at the default length almost every draw is accepted.
type Generator struct {
	length int
	policy Policy
	first  *gopassword.Generator // one letter
	rest   *gopassword.Generator // the full alphabet
	bits   float64
}

// NewGenerator returns a generator of passwords of the given length that
// meet p. rand is the source of randomness; nil means crypto/rand. Tests pass
// a seeded reader to get the same passwords every run.
func NewGenerator(length int, p Policy, rand io.Reader) (*Generator, error) {
	switch {
	case p.MinLength > BcryptBytes:
		return nil, fmt.Errorf("the server requires passwords of at least %d characters, but bcrypt only uses the first %d bytes, so generated passwords stop at %d: supply passwords in the roster, or lower the server's minimum_length", p.MinLength, BcryptBytes, BcryptBytes)
	case length < MinGeneratedLength:
		return nil, fmt.Errorf("password length %d is too short: choose a length of at least %d (the default is %d)", length, max(MinGeneratedLength, p.MinLength), DefaultLength)
	case length < p.MinLength:
		return nil, fmt.Errorf("password length %d is shorter than the %d characters the server requires: choose a length of at least %d", length, p.MinLength, p.MinLength)
	case length > BcryptBytes:
		return nil, fmt.Errorf("password length %d is more than bcrypt's %d bytes, and characters past the %dth add no strength: choose a length of at most %d", length, BcryptBytes, BcryptBytes, BcryptBytes)
	}
	// A length of at least MinGeneratedLength always leaves room for the four
	// classes a policy can require, so no "too short for the policy" case.

	if rand != nil {
		// go-password reads from whatever it is given without locking;
		// crypto/rand is safe for concurrent use, an injected reader may not
		// be.
		rand = &lockedReader{r: rand}
	}
	first, err := gopassword.NewGenerator(&gopassword.GeneratorInput{
		LowerLetters: lowerLetters,
		UpperLetters: upperLetters,
		Reader:       rand,
	})
	if err != nil {
		return nil, fmt.Errorf("set up password generator: %w", err)
	}
	// go-password draws letters with Generate(n, 0, 0, noUpper=true, ...)
	// uniformly from LowerLetters, so handing it the whole alphabet there
	// makes every character a uniform draw from the alphabet.
	rest, err := gopassword.NewGenerator(&gopassword.GeneratorInput{
		LowerLetters: alphabet,
		Reader:       rand,
	})
	if err != nil {
		return nil, fmt.Errorf("set up password generator: %w", err)
	}
	return &Generator{
		length: length,
		policy: p,
		first:  first,
		rest:   rest,
		bits:   entropyBits(length, p),
	}, nil
}

// Generate returns a new password. Its error means the random source failed.
func (g *Generator) Generate() (string, error) {
	for range maxAttempts {
		head, err := g.first.Generate(1, 0, 0, false, true)
		if err != nil {
			return "", fmt.Errorf("generate password: %w", err)
		}
		var b strings.Builder
		b.Grow(g.length)
		b.WriteString(head)
		// One character per call: asked for n characters, go-password draws each
		// and then inserts it at a random place in those drawn so far, a second
		// draw and a copy per character that change nothing when every character
		// comes from the same alphabet (and half its CPU time, measured with
		// BenchmarkGenerate).
		for b.Len() < g.length {
			c, err := g.rest.Generate(1, 0, 0, true, true)
			if err != nil {
				return "", fmt.Errorf("generate password: %w", err)
			}
			b.WriteString(c)
		}
		if pw := b.String(); g.policy.satisfiedBy(pw) {
			return pw, nil
		}
	}
	return "", fmt.Errorf("generate password: no password met the policy in %d draws; the random source is not random", maxAttempts)
}

// EntropyBits is the entropy of one generated password: log2 of the number
// of passwords the generator can return, all equally likely.
func (g *Generator) EntropyBits() float64 { return g.bits }

// entropyBits counts the passwords Generate can return — a letter, then
// length-1 characters of the alphabet, having every class p requires — by
// inclusion–exclusion over the required classes: all strings, minus those
// missing one required class, plus those missing two, and so on. The count
// is exact (big.Int); 72 characters of 65 symbols is about 2^434.
func entropyBits(length int, p Policy) float64 {
	type class struct{ inFirst, inRest int64 }
	var req []class
	if p.RequireDigit {
		req = append(req, class{0, int64(len(digits))})
	}
	if p.RequireSymbol {
		req = append(req, class{0, int64(len(Symbols))})
	}
	if p.RequireLowercase {
		req = append(req, class{int64(len(lowerLetters)), int64(len(lowerLetters))})
	}
	if p.RequireUppercase {
		req = append(req, class{int64(len(upperLetters)), int64(len(upperLetters))})
	}

	total := new(big.Int)
	for subset := 0; subset < 1<<len(req); subset++ {
		first, rest := int64(len(letters)), int64(len(alphabet))
		odd := false
		for i, c := range req {
			if subset&(1<<i) != 0 {
				first -= c.inFirst
				rest -= c.inRest
				odd = !odd
			}
		}
		n := new(big.Int).Exp(big.NewInt(rest), big.NewInt(int64(length-1)), nil)
		n.Mul(n, big.NewInt(first))
		if odd {
			total.Sub(total, n)
		} else {
			total.Add(total, n)
		}
	}
	return log2(total)
}

// log2 of a positive big integer, to float64 precision.
func log2(x *big.Int) float64 {
	mant := new(big.Float)
	exp := new(big.Float).SetInt(x).MantExp(mant) // x = mant × 2^exp, mant in [0.5, 1)
	m, _ := mant.Float64()
	return float64(exp) + math.Log2(m)
}

type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}
