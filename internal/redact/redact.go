// Package redact keeps registered secrets (the registration shared secret,
// an admin token) out of logs: a Set of secrets, a slog.Handler that blanks
// them out of every record, and an io.Writer that blanks them out of
// whatever passes through it.
//
// It is a last line of defence, built for a handful of secrets: code should
// not log secrets in the first place. Per-user passwords are not meant to be
// added; the code that handles them keeps them out of messages itself.
package redact

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Placeholder replaces every occurrence of a secret.
const Placeholder = "[REDACTED]"

// MinLength is the length of the shortest secret a Set accepts. Blanking
// out a one-to-three-byte "secret" would mangle ordinary words and numbers
// all over the log, and would tell a reader where it occurs, which for so
// short a string gives it away; such a string is no secret anyway, and the
// config package refuses one as a shared secret.
const MinLength = 4

// Set is a set of secrets, safe for concurrent use. The zero value is an
// empty set, and a nil *Set redacts nothing.
type Set struct {
	mu      sync.Mutex               // serialises Add
	secrets atomic.Pointer[[]string] // longest first; read without locking
}

// Add registers a secret. Along with the secret itself, Add registers the
// forms it takes when quoted by Go (%q, strconv.Quote), escaped in JSON,
// URL-encoded or base64-encoded, so that it is caught in a logged request
// body or a []byte attribute a JSON handler would encode. Secrets shorter
// than MinLength bytes are ignored.
func (s *Set) Add(secret string) {
	if len(secret) < MinLength {
		return
	}
	forms := []string{
		secret,
		unquote(strconv.Quote(secret)),
		unquote(jsonString(secret)),
		url.QueryEscape(secret),
		url.PathEscape(secret),
		base64.StdEncoding.EncodeToString([]byte(secret)),
		base64.RawStdEncoding.EncodeToString([]byte(secret)),
		base64.URLEncoding.EncodeToString([]byte(secret)),
		base64.RawURLEncoding.EncodeToString([]byte(secret)),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var next []string
	if cur := s.secrets.Load(); cur != nil {
		next = slices.Clone(*cur)
	}
	for _, f := range forms {
		if !slices.Contains(next, f) {
			next = append(next, f)
		}
	}
	// Longest first: the Writer needs the longest length, and reads it
	// from the front.
	slices.SortStableFunc(next, func(a, b string) int { return len(b) - len(a) })
	s.secrets.Store(&next)
}

// Redact returns str with every occurrence of every secret replaced by
// Placeholder. Overlapping or adjacent occurrences become one placeholder,
// so no fragment of any secret survives. A string without secrets is
// returned as is, without allocating.
func (s *Set) Redact(str string) string {
	spans := s.spans(str)
	if len(spans) == 0 {
		return str
	}
	var b strings.Builder
	at := 0
	for _, sp := range spans {
		b.WriteString(str[at:sp.start])
		b.WriteString(Placeholder)
		at = sp.end
	}
	b.WriteString(str[at:])
	return b.String()
}

// spans finds every occurrence of every secret in str and returns them
// sorted, with overlapping and adjacent ones merged.
func (s *Set) spans(str string) []span {
	var spans []span
	for _, sec := range s.list() {
		for from := 0; ; {
			i := strings.Index(str[from:], sec)
			if i < 0 {
				break
			}
			start := from + i
			spans = append(spans, span{start, start + len(sec)})
			from = start + 1 // occurrences may overlap ("aaaa" in "aaaaa")
		}
	}
	if len(spans) < 2 {
		return spans
	}
	slices.SortFunc(spans, func(a, b span) int { return a.start - b.start })
	merged := spans[:1]
	for _, sp := range spans[1:] {
		if last := &merged[len(merged)-1]; sp.start <= last.end {
			last.end = max(last.end, sp.end)
		} else {
			merged = append(merged, sp)
		}
	}
	return merged
}

// contains reports whether str holds any secret; cheaper than Redact when
// the answer is usually no.
func (s *Set) contains(str string) bool {
	for _, sec := range s.list() {
		if strings.Contains(str, sec) {
			return true
		}
	}
	return false
}

// longest is the length of the longest registered form of a secret.
func (s *Set) longest() int {
	if l := s.list(); len(l) > 0 {
		return len(l[0])
	}
	return 0
}

func (s *Set) list() []string {
	if s == nil {
		return nil
	}
	if p := s.secrets.Load(); p != nil {
		return *p
	}
	return nil
}

type span struct{ start, end int }

func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		return strconv.Quote(s) // cannot happen for a string
	}
	return string(b)
}

func unquote(q string) string { return q[1 : len(q)-1] }
