package redact_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/provision-matrix/provision/internal/redact"
)

func TestWriter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"one line", []string{"secret is " + secret + "\n"}, "secret is [REDACTED]\n"},
		{"split across writes", []string{"a " + secret[:5], secret[5:10], secret[10:] + " b\n"}, "a [REDACTED] b\n"},
		{"many lines at once", []string{"1 " + secret + "\n2\n3 " + secret + "\n"}, "1 [REDACTED]\n2\n3 [REDACTED]\n"},
		{"unfinished line needs Flush", []string{"tail " + secret}, "tail [REDACTED]"},
		{"byte by byte", strings.Split("x"+secret+"y\n", ""), "x[REDACTED]y\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			w := redact.NewWriter(&buf, newSet())
			for _, s := range tt.writes {
				n, err := w.Write([]byte(s))
				if err != nil || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want {
				t.Errorf("wrote %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWriterPassesLinesOnAtOnce(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := redact.NewWriter(&buf, newSet())
	w.Write([]byte("done\npartial"))
	if got := buf.String(); got != "done\n" {
		t.Errorf("after a complete and a partial line, wrote %q, want the complete line only", got)
	}
}

// TestWriterLongLine covers the boundary case: a line longer than the
// writer holds back, with a secret split across the writes around the point
// where it lets the line go.
func TestWriterLongLine(t *testing.T) {
	t.Parallel()
	for _, at := range []int{64<<10 - 5, 64 << 10, 64<<10 + 3, 64<<10 + 20} {
		var buf bytes.Buffer
		w := redact.NewWriter(&buf, newSet())
		line := strings.Repeat("x", at) + secret + strings.Repeat("y", 100)
		cut := at + 7 // inside the secret
		w.Write([]byte(line[:cut]))
		w.Write([]byte(line[cut:]))
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		want := strings.Repeat("x", at) + redact.Placeholder + strings.Repeat("y", 100)
		if got := buf.String(); got != want {
			t.Errorf("secret at %d: output has %d bytes, secret leaked: %v", at, len(got), strings.Contains(got, secret[:7]))
		}
	}
}

func TestWriterConcurrent(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := redact.NewWriter(&buf, newSet())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				w.Write([]byte("k=" + secret + "\n"))
			}
		})
	}
	wg.Wait()
	w.Flush()
	if got, want := buf.String(), strings.Repeat("k=[REDACTED]\n", 400); got != want {
		t.Errorf("concurrent writes came out mangled or unredacted")
	}
}
