package handoff

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/safefile"
)

// CredentialsHeader is the first row of a credentials file.
var CredentialsHeader = []string{"user_id", "password", "homeserver"}

// CredentialsOptions controls how the credentials file is written.
type CredentialsOptions struct {
	// Plaintext writes a plain CSV instead of encrypting it. Only for an
	// operator who explicitly asked: the file then holds every password in
	// the clear, protected by its 0600 mode alone.
	Plaintext bool
}

// Credentials is a credentials file being written: a CSV with the header
// user_id,password,homeserver, encrypted with age to every recipient (the
// binary age format, which age -d -i key.txt FILE opens), or plain when
// asked.
//
// Rows are encrypted and written as they are added, so a run of any size
// holds no more than age's 64 KiB chunk in memory. The file appears, complete,
// only at Commit, and never replaces a file: a credentials file may hold the only
// copy of an earlier run's passwords, so when the path exists the new file goes
// beside it (NAME-2.age, ...), and Path says where.
//
// Values are written verbatim, because the file's job is to hand over the
// exact password. In particular a supplied password that starts with '=',
// '+', '-' or '@' is not defused: a spreadsheet opening the decrypted file
// may read it as a formula. (Generated passwords start with a letter, and
// user IDs start with '@' but cannot hold a formula: localparts have no
// parentheses or quotes.)
//
// A Credentials is safe for concurrent use.
type Credentials struct {
	mu    sync.Mutex
	file  *safefile.File
	enc   io.WriteCloser // the age stream; nil when plaintext
	csv   *csv.Writer
	count int
	err   error // the first write error; the file is then unusable
	done  bool
	path  string // where Commit put it
}

// CreateCredentials starts the credentials file at path, encrypted to
// rcpts, or plain if o.Plaintext. Asking for both, or for neither (no
// recipients without Plaintext), is an error: the operator must say which.
func CreateCredentials(path string, rcpts []age.Recipient, o CredentialsOptions) (*Credentials, error) {
	switch {
	case o.Plaintext && len(rcpts) > 0:
		return nil, errors.New("credentials file: asked for plaintext and gave recipients to encrypt to: choose one")
	case !o.Plaintext && len(rcpts) == 0:
		return nil, errors.New("credentials file: no recipients to encrypt it to: give a recipients file with one age or SSH public key per line (" + keygenHint + "), or explicitly ask for a plaintext file")
	}
	safefile.RemoveStale(path)
	f, err := safefile.Create(path, true)
	if err != nil {
		return nil, fmt.Errorf("credentials file: %w", err)
	}
	c := &Credentials{file: f}
	var w io.Writer = f
	if !o.Plaintext {
		c.enc, err = age.Encrypt(f, rcpts...)
		if err != nil {
			f.Abort()
			return nil, fmt.Errorf("credentials file: encrypt to the recipients: %w", err)
		}
		w = c.enc
	}
	c.csv = csv.NewWriter(w)
	if err := c.write(CredentialsHeader); err != nil {
		f.Abort()
		return nil, err
	}
	return c, nil
}

// Add appends one user's credentials.
func (c *Credentials) Add(userID, password, homeserver string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.done:
		return fmt.Errorf("credentials file %s: add after commit or abort", c.file.Name())
	case c.err != nil:
		return c.err
	}
	if err := c.write([]string{userID, password, homeserver}); err != nil {
		return err
	}
	c.count++
	return nil
}

// write writes and flushes one row: flushing each row pushes it into the
// encryption stream, so a full disk shows up at the Add that hit it.
func (c *Credentials) write(row []string) error {
	if err := c.csv.Write(row); err == nil {
		c.csv.Flush()
	}
	if err := c.csv.Error(); err != nil {
		// The error comes from the file below, never from the row's content.
		c.err = fmt.Errorf("write credentials file %s: %w", c.file.Name(), err)
		return c.err
	}
	return nil
}

// Count is the number of users added so far.
func (c *Credentials) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

// Commit finishes the encryption and puts the file in place. After a failed
// Add, or on any error here, the file is discarded.
func (c *Credentials) Commit() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return fmt.Errorf("credentials file %s: commit after commit or abort", c.file.Name())
	}
	c.done = true
	if c.err != nil {
		c.file.Abort()
		return c.err
	}
	if c.enc != nil {
		// Close encrypts the last chunk and marks it final; without it the
		// file would not decrypt.
		if err := c.enc.Close(); err != nil {
			c.file.Abort()
			return fmt.Errorf("write credentials file %s: %w", c.file.Name(), err)
		}
	}
	path, err := c.file.CommitBeside("-")
	if err != nil {
		return fmt.Errorf("credentials file: %w", err)
	}
	c.path = path
	return nil
}

// Path is where Commit put the file: the path asked for, or, when a file was there
// already, the name beside it that it took.
func (c *Credentials) Path() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.path != "" {
		return c.path
	}
	return c.file.Name()
}

// Abort discards the file. It does nothing after Commit.
func (c *Credentials) Abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	c.file.Abort()
}
