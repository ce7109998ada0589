package handoff

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/safefile"
)

// Welcome is what a new user needs to sign in.
type Welcome struct {
	Homeserver string // the client-server URL, e.g. https://matrix.example.org
	UserID     string // @alice:example.org
	Password   string
}

// WriteWelcome writes the welcome note for the user with the given
// localpart to dir, encrypted to rcpt alone — the user's own key, so that
// nobody else, the operator included, can read it — and returns its path.
// The file name is WelcomeFileName(localpart).
//
// An existing welcome file is never replaced (it may hold a password that still
// works): the new note goes beside it as <name>~2.age, ~3, ... — a name no
// localpart maps to, since WelcomeFileName escapes '~'.
func WriteWelcome(dir string, localpart string, rcpt age.Recipient, w Welcome) (path string, err error) {
	if rcpt == nil {
		return "", fmt.Errorf("welcome note for %s: no recipient to encrypt it to", w.UserID)
	}
	if w.Homeserver == "" || w.UserID == "" || w.Password == "" {
		return "", fmt.Errorf("welcome note for %q: homeserver, user ID and password are all required", localpart)
	}
	name, err := WelcomeFileName(localpart)
	if err != nil {
		return "", err
	}
	path = filepath.Join(dir, name)
	safefile.RemoveStale(path)
	f, err := safefile.Create(path, true)
	if err != nil {
		return "", fmt.Errorf("welcome note for %s: %w", w.UserID, err)
	}
	defer f.Abort()
	enc, err := age.Encrypt(f, rcpt)
	if err != nil {
		return "", fmt.Errorf("welcome note for %s: encrypt: %w", w.UserID, err)
	}
	if _, err := enc.Write([]byte(welcomeText(localpart, w))); err != nil {
		return "", fmt.Errorf("write welcome note %s: %w", path, err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("write welcome note %s: %w", path, err)
	}
	if path, err = f.CommitBeside("~"); err != nil {
		return "", fmt.Errorf("welcome note for %s: %w", w.UserID, err)
	}
	return path, nil
}

// WelcomeFileName maps a localpart to the name of its welcome file:
// "<localpart>.age", with every byte outside [a-z0-9._=+-] written as %XX
// (so "/" becomes %2F and "%" itself %25), and a leading "." or "-" too, so
// that no file is hidden or reads as a command-line option. The mapping
// never yields a path separator, "." or "..", and is one-to-one — two users
// never share a file, even on a case-insensitive file system, since
// upper-case letters are escaped. Undo it with url.PathUnescape.
func WelcomeFileName(localpart string) (string, error) {
	if localpart == "" {
		return "", errors.New("welcome note: empty localpart")
	}
	var b strings.Builder
	for i := 0; i < len(localpart); i++ {
		c := localpart[i]
		safe := 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("._=+-", c) >= 0
		if i == 0 && (c == '.' || c == '-') {
			safe = false
		}
		if safe {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	b.WriteString(".age")
	// 255 bytes is the longest file name on common file systems.
	if b.Len() > 255 {
		return "", fmt.Errorf("welcome note for %q: file name would be %d bytes, more than a file system allows", localpart, b.Len())
	}
	return b.String(), nil
}

// welcomeText is the note inside a welcome file.
func welcomeText(localpart string, w Welcome) string {
	return fmt.Sprintf(`Your Matrix account

Homeserver:  %[1]s
User ID:     %[2]s
Password:    %[3]s

Signing in
  In Element (https://app.element.io, or the desktop or mobile app),
  choose "Sign in", then "Edit" next to the server name, and enter
  %[1]s as the homeserver. Sign in with the user name %[4]s
  (or the full user ID above) and the password. Other Matrix apps have the
  same choice of homeserver.

Change your password
  The server cannot make you change this password: it stays valid until
  you change it yourself. Change it when you first sign in (in Element:
  All settings, Account), then delete this note.
`, w.Homeserver, w.UserID, w.Password, localpart)
}
