package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

// An *Error reads as the error it wraps, and is both its kind and what it wraps.
func TestErrorKind(t *testing.T) {
	err := fmt.Errorf("journal j: %w", kind(ErrJournalKeyDamaged, fmt.Errorf("the key: %w", fs.ErrInvalid)))
	if got, want := err.Error(), "journal j: the key: invalid argument"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrJournalKeyDamaged) || !errors.Is(err, fs.ErrInvalid) || errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is: kind %v, wrapped %v, other kind %v", errors.Is(err, ErrJournalKeyDamaged), errors.Is(err, fs.ErrInvalid), errors.Is(err, ErrInvalid))
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Kind != ErrJournalKeyDamaged {
		t.Errorf("errors.As: %v", pe)
	}
}

func TestRosterSizeError(t *testing.T) {
	for _, tc := range []struct {
		err  *RosterSizeError
		want string
	}{
		{&RosterSizeError{Users: 2, Min: 10}, "the roster is too small to deactivate anyone: it has 2 users, fewer than --min-roster 10: nothing was changed"},
		{&RosterSizeError{Users: 1, Last: 3, Ratio: 0.5}, "the roster is too small to deactivate anyone: it has 1 users, and the last completed run had 3 (below --min-roster-ratio 0.5): nothing was changed"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
		if !errors.Is(tc.err, ErrRosterShrank) {
			t.Errorf("%v is not ErrRosterShrank", tc.err)
		}
	}
}

func TestProviderError(t *testing.T) {
	err := &ProviderError{Problems: []string{`"a" matches no upstream provider of MAS`, `"b" is the name of 2 upstream providers of MAS: use the ID`}}
	want := `"a" matches no upstream provider of MAS; "b" is the name of 2 upstream providers of MAS: use the ID: nothing was sent`
	if got := err.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
