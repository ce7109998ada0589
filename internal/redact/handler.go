package redact

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
)

// NewHandler returns a handler that passes every record on to h with the
// secrets in s replaced by Placeholder: in the message, in every attribute
// key and value — strings, errors, fmt.Stringers, []byte, groups at any depth,
// slog.LogValuers (resolved first) and any other value, as fmt or JSON would
// print it — including attributes added with WithAttrs, and group names.
//
// A value with no secret in it reaches h unchanged, with its type, so that h
// prints it as it would have. A value that does hold one reaches h as the
// redacted string of how it would have been printed.
func NewHandler(h slog.Handler, s *Set) slog.Handler {
	return &handler{next: h, set: s}
}

type handler struct {
	next slog.Handler
	set  *Set
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.set.Redact(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.attr(a)
	}
	return &handler{next: h.next.WithAttrs(red), set: h.set}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(h.set.Redact(name)), set: h.set}
}

func (h *handler) attr(a slog.Attr) slog.Attr {
	return slog.Attr{Key: h.set.Redact(a.Key), Value: h.value(a.Value)}
}

func (h *handler) value(v slog.Value) slog.Value {
	v = v.Resolve() // a LogValuer could return a secret
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(h.set.Redact(v.String()))
	case slog.KindGroup:
		group := v.Group()
		red := make([]slog.Attr, len(group))
		for i, a := range group {
			red[i] = h.attr(a)
		}
		return slog.GroupValue(red...)
	case slog.KindAny:
		return h.any(v)
	default:
		// Numbers, bools, times and durations: a secret of MinLength bytes
		// or more could only hide in one as digits, and the shared secret
		// and tokens are not numbers.
		return v
	}
}

func (h *handler) any(v slog.Value) slog.Value {
	switch x := v.Any().(type) {
	case error:
		if msg := x.Error(); h.set.contains(msg) {
			// Still an error, so that h prints it as one.
			return slog.AnyValue(redactedError(h.set.Redact(msg)))
		}
		return v
	case fmt.Stringer:
		if str := x.String(); h.set.contains(str) {
			return slog.StringValue(h.set.Redact(str))
		}
		return v
	case []byte:
		if str := string(x); h.set.contains(str) {
			return slog.StringValue(h.set.Redact(str))
		}
		return v
	default:
		// TextHandler prints such a value with %+v, JSONHandler with
		// encoding/json; a secret may show in either.
		if str := fmt.Sprintf("%+v", x); h.set.contains(str) {
			return slog.StringValue(h.set.Redact(str))
		}
		if b, err := json.Marshal(x); err == nil && h.set.contains(string(b)) {
			return slog.StringValue(h.set.Redact(string(b)))
		}
		return v
	}
}

// redactedError is an error whose message has been redacted. It does not
// wrap the original: nothing downstream of a log handler should reach the
// secret through Unwrap.
type redactedError string

func (e redactedError) Error() string { return string(e) }
