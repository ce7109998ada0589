package handoff_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/provision-matrix/provision/internal/handoff"
)

func TestParseRecipient(t *testing.T) {
	t.Parallel()
	x, ed, rs := x25519Key(t), ed25519Key(t), rsa2048Key(t)
	pq, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{x.public, ed.public, rs.public, pq.Recipient().String(), "  " + x.public + "\n"} {
		if _, err := handoff.ParseRecipient(s); err != nil {
			t.Errorf("ParseRecipient(%.30q...) = %v", s, err)
		}
	}

	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	authorized := func(pub any) string {
		k, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	}
	xid, _ := age.GenerateX25519Identity()
	secretKey := xid.String()

	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "age-keygen -o key.txt"},
		{"unknown", "hello world", "age-keygen -o key.txt"},
		{"age private key", secretKey, "private key"},
		{"ssh private key", string(ed.private), "private key"},
		{"plugin", "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t", "plugin"},
		{"truncated age key", x.public[:40], "malformed age recipient"},
		{"truncated ssh key", ed.public[:40], "malformed SSH public key"},
		{"small rsa", authorized(&small.PublicKey), "at least 2048"},
		{"ecdsa", authorized(&ec.PublicKey), "ssh-keygen -t ed25519"},
	}
	for _, tt := range tests {
		_, err := handoff.ParseRecipient(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseRecipient = %v, want an error with %q", tt.name, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "AGE-SECRET-KEY") || strings.Contains(err.Error(), "PRIVATE KEY") ||
			len(tt.in) > 10 && strings.Contains(err.Error(), tt.in) {
			t.Errorf("%s: error %q quotes its input", tt.name, err)
		}
	}
}

func TestReadRecipientsFile(t *testing.T) {
	t.Parallel()
	x, ed := x25519Key(t), ed25519Key(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	good := write("good.txt", "# operators\n\n"+x.public+"\r\n# alice's laptop\n"+ed.public+"\n")
	rcpts, err := handoff.ReadRecipientsFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(rcpts) != 2 {
		t.Fatalf("read %d recipients, want 2", len(rcpts))
	}

	xid, _ := age.GenerateX25519Identity()
	tests := []struct {
		name, content, want string
	}{
		{"bad line", "# c\n" + x.public + "\nnot a key\n", "bad.txt:3: unknown recipient type"},
		{"identity file", "# created: today\n# public key: " + x.public + "\n" + xid.String() + "\n", "bad.txt:3: this is an age private key"},
		{"empty", "# nothing\n\n", "bad.txt: no recipients found"},
		{"long line", x.public + "\n" + strings.Repeat("a", 9000) + "\n", "bad.txt:2: line is longer"},
		{"binary", "\xff\xfe\n", "bad.txt:1: not valid UTF-8"},
	}
	for _, tt := range tests {
		p := write("bad.txt", tt.content)
		_, err := handoff.ReadRecipientsFile(p)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, tt.want)) {
			t.Errorf("%s: ReadRecipientsFile = %v, want an error with %q", tt.name, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "AGE-SECRET-KEY") {
			t.Errorf("%s: error %q echoes a private key", tt.name, err)
		}
	}

	if _, err := handoff.ReadRecipientsFile(filepath.Join(dir, "missing.txt")); err == nil {
		t.Error("ReadRecipientsFile of a missing file succeeded")
	}
}

func FuzzParseRecipient(f *testing.F) {
	xid, _ := age.GenerateX25519Identity()
	for _, s := range []string{"", "age1", xid.Recipient().String(), "ssh-ed25519 AAAA", "ssh-rsa", "AGE-SECRET-KEY-1", "age1pq1", "age1a1b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := handoff.ParseRecipient(s)
		if (r == nil) == (err == nil) {
			t.Fatalf("ParseRecipient(%q) = %v, %v: want exactly one", s, r, err)
		}
	})
}
