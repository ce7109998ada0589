package password_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/provision-matrix/provision/internal/password"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	strict := password.Policy{MinLength: 10, RequireDigit: true, RequireSymbol: true, RequireLowercase: true, RequireUppercase: true}
	tests := []struct {
		name   string
		policy password.Policy
		pw     string
		want   string // "" means accepted
	}{
		{"no policy accepts anything", password.Policy{}, "x", ""},
		{"meets strict", strict, "Abcdefgh1-", ""},
		{"unicode letter is a symbol, as Synapse counts it", strict, "Abcdefgh1é", ""},
		{"length counts characters not bytes", password.Policy{MinLength: 4}, "éééé", ""},
		{"long password is the admin's choice", password.Policy{}, strings.Repeat("a", 100), ""},
		{"512 bytes is the limit", password.Policy{}, strings.Repeat("a", 512), ""},
		{"empty", password.Policy{}, "", "password is empty"},
		{"empty under a policy says only empty", strict, "", "password is empty"},
		{"too long", password.Policy{}, strings.Repeat("a", 513), "password is 513 bytes, more than the 512 a homeserver accepts"},
		{"NUL", password.Policy{}, "abc\x00def", "password contains a NUL byte"},
		{"invalid UTF-8", password.Policy{}, "abc\xffdef", "password is not valid UTF-8"},
		{"too short only", password.Policy{MinLength: 10}, "abcdef", "password is 6 characters, the server requires at least 10"},
		{"short and no digit", password.Policy{MinLength: 10, RequireDigit: true}, "abcdef", "password is 6 characters, the server requires at least 10, and it has no digit"},
		{"no digit", password.Policy{RequireDigit: true}, "abcdef", "password has no digit"},
		{"no symbol", password.Policy{RequireSymbol: true}, "abc123", "password has no symbol"},
		{"no lowercase", password.Policy{RequireLowercase: true}, "ABC123", "password has no lowercase letter"},
		{"no uppercase", password.Policy{RequireUppercase: true}, "abc123", "password has no uppercase letter"},
		{"every rule at once", strict, "é", "password is 1 character, the server requires at least 10, and it has no digit, no lowercase letter and no uppercase letter"},
		{"hard limits and policy together", strict, "ab\x00", "password contains a NUL byte, is 3 characters, the server requires at least 10, and it has no digit and no uppercase letter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.policy.Check(tt.pw)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Check(%q) = %v, want accepted", tt.pw, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check(%q) accepted, want %q", tt.pw, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Check(%q) = %q\nwant %q", tt.pw, err, tt.want)
			}
			var pe *password.Error
			if !errors.As(err, &pe) || pe.Hint == "" {
				t.Errorf("Check(%q) = %#v, want a *password.Error with a hint", tt.pw, err)
			}
			if len(tt.pw) >= 4 && strings.Contains(err.Error()+pe.Hint, tt.pw) {
				t.Errorf("error %q or hint %q contains the password", err, pe.Hint)
			}
		})
	}
}

func TestCheckHintNamesPolicy(t *testing.T) {
	t.Parallel()
	err := password.Policy{MinLength: 12, RequireDigit: true}.Check("short")
	var pe *password.Error
	if !errors.As(err, &pe) {
		t.Fatalf("Check = %v, want *password.Error", err)
	}
	if !strings.Contains(pe.Hint, "at least 12 characters, with a digit") {
		t.Errorf("hint %q does not state the policy", pe.Hint)
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p, q, want password.Policy
	}{
		{password.Policy{}, password.Policy{}, password.Policy{}},
		{password.Policy{MinLength: 8}, password.Policy{MinLength: 12}, password.Policy{MinLength: 12}},
		{password.Policy{MinLength: 12, RequireDigit: true}, password.Policy{MinLength: 8, RequireSymbol: true},
			password.Policy{MinLength: 12, RequireDigit: true, RequireSymbol: true}},
		{password.Policy{RequireLowercase: true}, password.Policy{RequireUppercase: true},
			password.Policy{RequireLowercase: true, RequireUppercase: true}},
	}
	for _, tt := range tests {
		if got := tt.p.Merge(tt.q); got != tt.want {
			t.Errorf("%+v.Merge(%+v) = %+v, want %+v", tt.p, tt.q, got, tt.want)
		}
		if got := tt.q.Merge(tt.p); got != tt.want {
			t.Errorf("%+v.Merge(%+v) = %+v, want %+v (Merge must be symmetric)", tt.q, tt.p, got, tt.want)
		}
	}
}

func TestPolicyString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    password.Policy
		want string
	}{
		{password.Policy{}, "no requirements"},
		{password.Policy{MinLength: 10}, "at least 10 characters"},
		{password.Policy{RequireDigit: true}, "with a digit"},
		{password.Policy{MinLength: 8, RequireDigit: true, RequireUppercase: true}, "at least 8 characters, with a digit and an uppercase letter"},
		{password.Policy{MinLength: 8, RequireDigit: true, RequireSymbol: true, RequireLowercase: true, RequireUppercase: true},
			"at least 8 characters, with a digit, a symbol, a lowercase letter and an uppercase letter"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"", "a", "Abcdefgh1-", "ab\x00", "\xff", strings.Repeat("a", 600)} {
		f.Add(s)
	}
	strict := password.Policy{MinLength: 10, RequireDigit: true, RequireSymbol: true, RequireLowercase: true, RequireUppercase: true}
	f.Fuzz(func(t *testing.T, pw string) {
		err := strict.Check(pw)
		if err == nil && (len(pw) > password.MaxBytes || strings.ContainsRune(pw, 0) || len([]rune(pw)) < 10) {
			t.Errorf("Check(%q) accepted a password breaking a hard limit or the minimum length", pw)
		}
		if err != nil && len(pw) >= 4 && strings.Contains(err.Error(), pw) {
			t.Errorf("Check error %q contains the password", err)
		}
	})
}
