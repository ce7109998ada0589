package redact_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/provision-matrix/provision/internal/redact"
)

const secret = "s3cr3t-shared-key"

func TestRedact(t *testing.T) {
	t.Parallel()
	var s redact.Set
	s.Add(secret)
	s.Add("tokenABC")
	s.Add("abc") // too short: ignored
	s.Add("")    // ignored
	tests := []struct{ in, want string }{
		{"nothing here", "nothing here"},
		{"abc is not a secret", "abc is not a secret"},
		{"key=" + secret, "key=[REDACTED]"},
		{secret + " and " + secret, "[REDACTED] and [REDACTED]"},
		{"tokenABC" + secret, "[REDACTED]"}, // adjacent: one placeholder
		{"Bearer tokenABC.", "Bearer [REDACTED]."},
		{fmt.Sprintf("%q", secret+"\n"), `"[REDACTED]\n"`},
	}
	for _, tt := range tests {
		if got := s.Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactOverlapping(t *testing.T) {
	t.Parallel()
	var s redact.Set
	s.Add("abcdef")
	s.Add("defghi")
	s.Add("xxxx")
	tests := []struct{ in, want string }{
		// No fragment of either secret survives.
		{"1abcdefghi2", "1[REDACTED]2"},
		{"xxxxxxx", "[REDACTED]"},
		{"xxx", "xxx"},
	}
	for _, tt := range tests {
		if got := s.Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactEncodedForms(t *testing.T) {
	t.Parallel()
	const awkward = `pa"ss\word<&>+/ x`
	var s redact.Set
	s.Add(awkward)
	for _, form := range []string{
		fmt.Sprintf("%q", awkward),
		`{"secret":"pa\"ss\\word\u003c\u0026\u003e+/ x"}`, // encoding/json
		"secret=pa%22ss%5Cword%3C%26%3E%2B%2F+x",          // url.QueryEscape
		"Basic cGEic3Ncd29yZDwmPisvIHg=",                  // base64
	} {
		if got := s.Redact(form); strings.Contains(got, "ss") {
			t.Errorf("Redact(%q) = %q, leaving the secret readable", form, got)
		}
	}
}

func TestNilSet(t *testing.T) {
	t.Parallel()
	var s *redact.Set
	if got := s.Redact("anything"); got != "anything" {
		t.Errorf("nil Set redacted %q to %q", "anything", got)
	}
}

func TestSetConcurrent(t *testing.T) {
	t.Parallel()
	var s redact.Set
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				sec := fmt.Sprintf("secret-%d-%d", i, j)
				s.Add(sec)
				if got := s.Redact("x " + sec + " y"); got != "x [REDACTED] y" {
					t.Errorf("Redact right after Add = %q", got)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkRedactClean(b *testing.B) {
	var s redact.Set
	s.Add(secret)
	s.Add("syt_YWRtaW4_abcdefghijklmnopqrst_123456")
	line := "register @alice:example.org: M_USER_IN_USE: User ID already taken (attempt 1 of 3)"
	for b.Loop() {
		s.Redact(line)
	}
}
