package agetest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provision-matrix/provision/internal/agetest"
)

// TestKeygenThenEncryptDecrypt runs the commands the way the README tells an operator
// to: make a key, encrypt to its public key, decrypt with it.
func TestKeygenThenEncryptDecrypt(t *testing.T) {
	t.Parallel()
	keygen := agetest.Command(t, "age-keygen")
	age := agetest.Command(t, "age")
	dir := t.TempDir()
	key := filepath.Join(dir, "key.txt")
	if out, err := exec.Command(keygen, "-o", key).CombinedOutput(); err != nil {
		t.Fatalf("age-keygen -o key.txt: %v\n%s", err, out)
	}
	pub, err := exec.Command(keygen, "-y", key).Output()
	if err != nil || !strings.HasPrefix(string(pub), "age1") {
		t.Fatalf("age-keygen -y key.txt = %q, %v; want an age1... public key", pub, err)
	}
	plain := filepath.Join(dir, "plain.txt")
	if err := os.WriteFile(plain, []byte("user_id,password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	enc := filepath.Join(dir, "plain.age")
	if out, err := exec.Command(age, "-r", strings.TrimSpace(string(pub)), "-o", enc, plain).CombinedOutput(); err != nil {
		t.Fatalf("age -r: %v\n%s", err, out)
	}
	got, err := exec.Command(age, "-d", "-i", key, enc).Output()
	if err != nil || string(got) != "user_id,password\n" {
		t.Errorf("age -d -i key.txt = %q, %v", got, err)
	}
}
