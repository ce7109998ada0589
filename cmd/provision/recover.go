package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/handoff"
	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/redact"
	"github.com/provision-matrix/provision/internal/sanitize"
)

const recoverLong = `recover writes every password that a journal still holds and that was never
handed off into a new age file for the given recipients, and lists whose they are.

A run hands each password off (the credentials file, the welcome files) and only then
records in its journal that nothing more is owed. A run killed at the wrong moment, a
credentials file deleted by mistake, or a journal set aside with --fresh can leave
passwords that exist only in the journal: recover gets them back.

The journal is the one a run against the same server uses: the server's journal in
--state-dir (name it with --server-name when the state directory holds several), or
--journal FILE. Give the same secret as the runs (--shared-secret-file, --admin-token-file,
--mas-client-secret-file or the PROVISION_ variables): the journal's passwords are
encrypted with a key derived from it.

Users whose last request got no answer are listed as "unknown": their account may or
may not have taken the password. Run the same provision command again (without
--fresh): it finds out, by logging in, and hands off what it finds. recover never sends
anything to the server. It takes the journal's lock, so it waits for no run: while a
run is using the journal it exits 3.`

const recoverExample = `  # Get back the passwords that an interrupted run did not hand off
  provision recover --shared-secret-file /etc/provision/secret \
    --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p \
    --credentials recovered.age

  # The state directory holds journals of two servers: name one
  provision recover --server-name example.org --recipient "$(cat ~/.ssh/id_ed25519.pub)" ...`

func newRecoverCmd(io streams) *cobra.Command {
	c := &cobra.Command{
		Use:     "recover [flags]",
		Short:   "Write the passwords a journal holds that were never handed off to a new age file",
		Long:    recoverLong,
		Example: recoverExample,
		Args:    cobra.NoArgs,
	}
	config.RegisterFlags(c.Flags())
	c.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := config.LoadWithoutRoster(cmd.Flags(), os.Getenv)
		if err != nil {
			var ce *config.Error
			if errors.As(err, &ce) {
				return usageError{err}
			}
			return err
		}
		if !cmd.Flags().Changed("credentials") && os.Getenv("PROVISION_CREDENTIALS") == "" {
			cfg.Credentials = "recovered-" + strings.TrimPrefix(cfg.Credentials, "credentials-")
		}
		secrets := &redact.Set{}
		for _, s := range cfg.Secrets() {
			secrets.Add(string(s))
		}
		return logFinalError(cfg, io.stderr, redacted(explain(cfg, runRecover(cfg, io.stdout, io.stderr)), secrets))
	}
	return c
}

// runRecover writes the recovered passwords to a new age file and lists, on stdout, one
// user a line: "recovered <user ID>" or "unknown <user ID>" (the next run settles it).
func runRecover(cfg *config.Config, stdout, stderr io.Writer) error {
	secrets := &redact.Set{}
	for _, s := range cfg.Secrets() {
		secrets.Add(string(s))
	}
	ui := newUI(uiOptionsOf(cfg), stderr, secrets)
	defer ui.close()
	rcpts, err := operatorRecipients(cfg)
	if err != nil {
		return err
	}
	path, err := recoverJournal(cfg)
	if err != nil {
		return err
	}
	m, err := newMode(cfg, ui.log)
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
		ui.info(fmt.Sprintf("%d user(s) listed as unknown: the server's answer about them was lost; run the same provision command again (without --fresh): it finds out and hands their passwords off", len(unknown)))
	}
	if len(created) == 0 {
		ui.info(fmt.Sprintf("the journal %s holds no password of a created account that was not handed off: nothing to write", path))
		return nil
	}
	creds, err := handoff.CreateCredentials(cfg.Credentials, rcpts, handoff.CredentialsOptions{Plaintext: cfg.Plaintext})
	if err != nil {
		return usage(err, "")
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
		ui.log.Warn("could not record the handoff in the journal; the next run will hand these passwords off again", "error", err.Error())
	}
	ui.credentialsWritten(len(created), creds.Path())
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
		return "", usage(fmt.Errorf("no journal in the state directory %s", cfg.StateDir), "name the journal with --journal FILE, or the state directory the runs used with --state-dir")
	}
	return "", usage(fmt.Errorf("the state directory %s holds the journals of %d servers: %s", cfg.StateDir, len(found), strings.Join(found, ", ")),
		"name the server with --server-name (the part after ':' in its user IDs), or the journal with --journal")
}
