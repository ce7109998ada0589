package redact_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/provision-matrix/provision/internal/redact"
)

type stringer struct{ s string }

func (x stringer) String() string { return "token " + x.s }

type valuer struct{ s string }

func (x valuer) LogValue() slog.Value { return slog.StringValue(x.s) }

type config struct {
	Server string
	Secret string
}

func newSet() *redact.Set {
	s := new(redact.Set)
	s.Add(secret)
	return s
}

// TestHandler logs a secret in every way slog allows, through the text and
// the JSON handler, and checks that it never reaches the output.
func TestHandler(t *testing.T) {
	t.Parallel()
	wrapped := fmt.Errorf("register @alice:example.org: %w", errors.New("bad secret "+secret))
	cases := []struct {
		name string
		log  func(*slog.Logger)
	}{
		{"message", func(l *slog.Logger) { l.Info("using " + secret) }},
		{"string", func(l *slog.Logger) { l.Info("x", "secret", secret) }},
		{"key", func(l *slog.Logger) { l.Info("x", secret, 1) }},
		{"error", func(l *slog.Logger) { l.Info("x", "err", errors.New(secret)) }},
		{"wrapped error", func(l *slog.Logger) { l.Info("x", "err", wrapped) }},
		{"stringer", func(l *slog.Logger) { l.Info("x", "tok", stringer{secret}) }},
		{"bytes", func(l *slog.Logger) { l.Info("x", "raw", []byte(secret)) }},
		{"struct", func(l *slog.Logger) { l.Info("x", "cfg", config{"hs", secret}) }},
		{"pointer", func(l *slog.Logger) { l.Info("x", "cfg", &config{"hs", secret}) }},
		{"map", func(l *slog.Logger) { l.Info("x", "m", map[string]string{"k": secret}) }},
		{"slice", func(l *slog.Logger) { l.Info("x", "s", []string{"a", secret}) }},
		{"log valuer", func(l *slog.Logger) { l.Info("x", "v", valuer{secret}) }},
		{"group", func(l *slog.Logger) { l.Info("x", slog.Group("req", "body", secret)) }},
		{"nested groups", func(l *slog.Logger) {
			l.Info("x", slog.Group("a", slog.Group("b", slog.Any("err", wrapped), "s", secret)))
		}},
		{"with attrs", func(l *slog.Logger) { l.With("secret", secret).Info("x") }},
		{"with group", func(l *slog.Logger) { l.WithGroup(secret).Info("x", "k", "v") }},
		{"with group and attrs", func(l *slog.Logger) {
			l.WithGroup("g").With(slog.Group("h", "s", secret)).Info("x", "t", stringer{secret})
		}},
	}
	for _, format := range []string{"text", "json"} {
		for _, tc := range cases {
			t.Run(format+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				var buf bytes.Buffer
				var h slog.Handler = slog.NewTextHandler(&buf, nil)
				if format == "json" {
					h = slog.NewJSONHandler(&buf, nil)
				}
				tc.log(slog.New(redact.NewHandler(h, newSet())))
				out := buf.String()
				if strings.Contains(out, secret) || strings.Contains(out, "czNjcjN0") /* base64 */ {
					t.Errorf("secret reached the log: %s", out)
				}
				if !strings.Contains(out, redact.Placeholder) {
					t.Errorf("no %s in the log: %s", redact.Placeholder, out)
				}
			})
		}
	}
}

// record keeps the attributes a handler passes on, to check their types.
type record struct {
	slog.Handler
	attrs []slog.Attr
}

func (r *record) Handle(_ context.Context, rec slog.Record) error {
	rec.Attrs(func(a slog.Attr) bool { r.attrs = append(r.attrs, a); return true })
	return nil
}

func TestHandlerKeepsCleanValues(t *testing.T) {
	t.Parallel()
	rec := &record{Handler: slog.NewTextHandler(&bytes.Buffer{}, nil)}
	clean := errors.New("M_USER_IN_USE")
	dirty := fmt.Errorf("wrap: %w", errors.New(secret))
	slog.New(redact.NewHandler(rec, newSet())).Info("x",
		"clean", clean, "dirty", dirty, "n", 42, "s", stringer{"fine"})

	got := map[string]slog.Value{}
	for _, a := range rec.attrs {
		got[a.Key] = a.Value
	}
	if got["clean"].Any() != clean {
		t.Errorf("an error without a secret became %#v, want it passed on as is", got["clean"].Any())
	}
	if got["n"].Int64() != 42 {
		t.Errorf("int became %v", got["n"])
	}
	if _, ok := got["s"].Any().(stringer); !ok {
		t.Errorf("a Stringer without a secret became %#v", got["s"].Any())
	}
	err, ok := got["dirty"].Any().(error)
	if !ok {
		t.Fatalf("an error with a secret became %#v, want still an error", got["dirty"].Any())
	}
	if err.Error() != "wrap: "+redact.Placeholder {
		t.Errorf("redacted error says %q", err)
	}
	if errors.Unwrap(err) != nil {
		t.Errorf("redacted error still unwraps to %v", errors.Unwrap(err))
	}
}

func TestHandlerEnabled(t *testing.T) {
	t.Parallel()
	h := redact.NewHandler(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}), newSet())
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelError) {
		t.Error("Enabled does not follow the wrapped handler")
	}
}
