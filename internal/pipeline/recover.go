package pipeline

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/handoff"
	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/sanitize"
)

// Recover writes the recovered passwords to a new age file and lists, on stdout, one
// user a line: "recovered <user ID>" or "unknown <user ID>" (the next run settles it).
func Recover(cfg *config.Config, obs Observer, stdout io.Writer) error {
	rcpts, err := OperatorRecipients(cfg)
	if err != nil {
		return err
	}
	path, err := recoverJournal(cfg)
	if err != nil {
		return err
	}
	m, err := newMode(cfg, obs.Log())
	if err != nil {
		return err
	}
	jr, err := openJournal(cfg, path, "-", m)
	if err != nil {
		return err
	}
	defer jr.Close()
	owed, err := jr.Undelivered()
	if err != nil {
		return fmt.Errorf("reading the journal %s: %w", path, err)
	}
	// Only the passwords of accounts the journal knows were created go into the
	// file: one whose request got no answer may not be live, and the next run settles
	// it (and hands it off then), so that no user is ever handed two passwords.
	var created, unknown []journal.Entry
	for _, e := range owed {
		if e.Done && e.Status == journal.StatusCreated {
			created = append(created, e)
		} else {
			unknown = append(unknown, e)
		}
	}
	for _, e := range unknown {
		fmt.Fprintln(stdout, "unknown", who(e))
	}
	if len(unknown) > 0 {
		obs.Info(fmt.Sprintf("%d user(s) listed as unknown: the server's answer about them was lost; run the same provision command again (without --fresh): it finds out and hands their passwords off", len(unknown)))
	}
	if len(created) == 0 {
		obs.Info(fmt.Sprintf("the journal %s holds no password of a created account that was not handed off: nothing to write", path))
		return nil
	}
	creds, err := handoff.CreateCredentials(cfg.Credentials, rcpts, handoff.CredentialsOptions{Plaintext: cfg.Plaintext})
	if err != nil {
		return kind(ErrInvalid, err)
	}
	defer creds.Abort()
	for _, e := range created {
		if err := creds.Add(e.UserID, e.Password, cfg.Homeserver); err != nil {
			return err
		}
	}
	if err := creds.Commit(); err != nil {
		return fmt.Errorf("writing %s: %w (nothing was changed in the journal)", cfg.Credentials, err)
	}
	// The file is in place: the passwords are handed off now, and the checkpoint
	// makes the journal forget them.
	for _, e := range created {
		if err := jr.Outcome(e.Localpart, e.UserID, journal.StatusCreated); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	if err := jr.Checkpoint(); err != nil {
		obs.Log().Warn("could not record the handoff in the journal; the next run will hand these passwords off again", "error", err.Error())
	}
	obs.CredentialsWritten(len(created), creds.Path())
	names := make([]string, 0, len(created))
	for _, e := range created {
		names = append(names, who(e))
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintln(stdout, "recovered", n)
	}
	return nil
}

func who(e journal.Entry) string {
	if w := sanitize.Line(e.UserID, 0); w != "" {
		return w
	}
	return sanitize.Line(e.Localpart, 0)
}

// recoverJournal is the journal recover reads: --journal, the server's journal in the
// state directory (--server-name), or the only journal there.
func recoverJournal(cfg *config.Config) (string, error) {
	if cfg.Journal != "" {
		return cfg.Journal, nil
	}
	if cfg.ServerName != "" {
		return journalPath(cfg, cfg.ServerName), nil
	}
	found, _ := filepath.Glob(filepath.Join(cfg.StateDir, "*.journal"))
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", kind(ErrNoJournal, fmt.Errorf("no journal in the state directory %s", cfg.StateDir))
	}
	return "", kind(ErrManyJournals, fmt.Errorf("the state directory %s holds the journals of %d servers: %s", cfg.StateDir, len(found), strings.Join(found, ", ")))
}
