package handoff_test

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/handoff"
)

func TestWriteWelcome(t *testing.T) {
	t.Parallel()
	user, other, operator := ed25519Key(t), x25519Key(t), x25519Key(t)
	for _, k := range []key{user, x25519Key(t)} {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			rcpt, err := handoff.ParseRecipient(k.public)
			if err != nil {
				t.Fatal(err)
			}
			w := handoff.Welcome{Homeserver: hs, UserID: "@alice:example.org", Password: "Secret-pass.word_1"}
			path, err := handoff.WriteWelcome(dir, "alice", rcpt, w)
			if err != nil {
				t.Fatal(err)
			}
			if path != filepath.Join(dir, "alice.age") {
				t.Errorf("path = %q, want %q", path, filepath.Join(dir, "alice.age"))
			}
			checkMode(t, path)
			note, err := decrypt(t, path, k.identity)
			if err != nil {
				t.Fatalf("the user's own identity cannot decrypt: %v", err)
			}
			for _, want := range []string{hs, "@alice:example.org", "Secret-pass.word_1", "Element", "homeserver", "cannot make you change this password"} {
				if !strings.Contains(string(note), want) {
					t.Errorf("note lacks %q:\n%s", want, note)
				}
			}
			for _, k := range []key{other, operator} {
				_, err := decrypt(t, path, k.identity)
				var nomatch *age.NoIdentityMatchError
				if !errors.As(err, &nomatch) {
					t.Errorf("another identity: decrypt = %v, want age.NoIdentityMatchError", err)
				}
			}

			// A second note never replaces the first: it goes beside it.
			second, err := handoff.WriteWelcome(dir, "alice", rcpt, w)
			if err != nil || filepath.Base(second) != "alice~2.age" {
				t.Errorf("second WriteWelcome = %s, %v; want alice~2.age beside the first", second, err)
			}
			if _, err := decrypt(t, path, k.identity); err != nil {
				t.Errorf("the first note no longer decrypts: %v", err)
			}
		})
	}
}

func TestWriteWelcomeRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rcpt, _ := handoff.ParseRecipient(x25519Key(t).public)
	full := handoff.Welcome{Homeserver: hs, UserID: "@a:example.org", Password: "pw-pw-pw"}
	if _, err := handoff.WriteWelcome(dir, "a", nil, full); err == nil {
		t.Error("WriteWelcome without a recipient succeeded")
	}
	if _, err := handoff.WriteWelcome(dir, "a", rcpt, handoff.Welcome{Homeserver: hs, UserID: "@a:example.org"}); err == nil {
		t.Error("WriteWelcome without a password succeeded")
	}
	if _, err := handoff.WriteWelcome(dir, "", rcpt, full); err == nil {
		t.Error("WriteWelcome with an empty localpart succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused calls left %d files", len(entries))
	}
}

func TestWelcomeFileName(t *testing.T) {
	t.Parallel()
	tests := []struct{ localpart, want string }{
		{"alice", "alice.age"},
		{"a.b_c=d-e+f", "a.b_c=d-e+f.age"},
		{"team/alice", "team%2Falice.age"},
		{"../../etc/passwd", "%2E.%2F..%2Fetc%2Fpasswd.age"},
		{"..", "%2E..age"},
		{".hidden", "%2Ehidden.age"},
		{"-rf", "%2Drf.age"},
		{"Alice", "%41lice.age"},
		{"100%", "100%25.age"},
		{"a\\b\x00c", "a%5Cb%00c.age"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got, err := handoff.WelcomeFileName(tt.localpart)
		if err != nil {
			t.Errorf("WelcomeFileName(%q) = %v", tt.localpart, err)
			continue
		}
		if got != tt.want {
			t.Errorf("WelcomeFileName(%q) = %q, want %q", tt.localpart, got, tt.want)
		}
		if strings.ContainsAny(got, `/\`) || filepath.Base(got) != got || got == "." || got == ".." {
			t.Errorf("WelcomeFileName(%q) = %q is not a plain file name", tt.localpart, got)
		}
		if back, err := url.PathUnescape(strings.TrimSuffix(got, ".age")); err != nil || back != tt.localpart {
			t.Errorf("url.PathUnescape(%q) = %q, %v; want %q back", got, back, err, tt.localpart)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("%q and %q share the file %q", prev, tt.localpart, got)
		}
		seen[got] = tt.localpart
	}
	if _, err := handoff.WelcomeFileName(strings.Repeat("/", 100)); err == nil {
		t.Error("a file name over 255 bytes was accepted")
	}
}

func TestWriteWelcomeStaysInDir(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, "welcome")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	rcpt, _ := handoff.ParseRecipient(x25519Key(t).public)
	w := handoff.Welcome{Homeserver: hs, UserID: "@x:example.org", Password: "pw-pw-pw"}
	for _, lp := range []string{"../escape", "a/../../escape", "/abs"} {
		path, err := handoff.WriteWelcome(dir, lp, rcpt, w)
		if err != nil {
			t.Fatalf("WriteWelcome(%q) = %v", lp, err)
		}
		if filepath.Dir(path) != dir {
			t.Errorf("WriteWelcome(%q) wrote %q, outside %q", lp, path, dir)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 1 {
		t.Errorf("files appeared next to the welcome directory: %v", entries)
	}
}

func FuzzWelcomeFileName(f *testing.F) {
	for _, s := range []string{"alice", "../x", ".", "..", "a/b", "%2F"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, lp string) {
		name, err := handoff.WelcomeFileName(lp)
		if err != nil {
			return
		}
		if strings.ContainsAny(name, "/\\\x00") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "-") {
			t.Fatalf("WelcomeFileName(%q) = %q", lp, name)
		}
		if back, err := url.PathUnescape(strings.TrimSuffix(name, ".age")); err != nil || back != lp {
			t.Fatalf("WelcomeFileName(%q) = %q does not map back", lp, name)
		}
	})
}
