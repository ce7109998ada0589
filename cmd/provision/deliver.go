package main

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/provision-matrix/provision/internal/batch"
	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/handoff"
	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/roster"
)

// delivery hands each created user's password off: to the user's own welcome file when
// the roster names their key, and to the operator's credentials file unless only the
// user may see it. It keeps no list of whom it delivered to: once the credentials file
// is safely in place, one journal checkpoint records that nothing more is owed to any
// user this run created (see finishHandoff).
type delivery struct {
	creds        *handoff.Credentials
	homeserver   string
	handoffDir   string
	operatorCopy bool
	force        bool

	mu       sync.Mutex
	madeDir  bool
	welcomes int
}

var _ batch.Handoff = (*delivery)(nil)

func (d *delivery) Deliver(u roster.User, userID, pw string, again bool) error {
	toOperator := true
	if u.Recipient != "" {
		rcpt, err := handoff.ParseRecipient(u.Recipient)
		if err != nil {
			return fmt.Errorf("recipient of %s: %w", u.Localpart, err)
		}
		if err := d.mkdir(); err != nil {
			return err
		}
		// On a resumed run the file may exist from the interrupted one; it holds the
		// same password, so replacing it is safe.
		if _, err := handoff.WriteWelcome(d.handoffDir, u.Localpart, rcpt, handoff.Welcome{
			Homeserver: d.homeserver, UserID: userID, Password: pw,
		}, d.force || again); err != nil {
			return err
		}
		d.mu.Lock()
		d.welcomes++
		d.mu.Unlock()
		toOperator = d.operatorCopy
	}
	if toOperator {
		if err := d.creds.Add(userID, pw, d.homeserver); err != nil {
			return err
		}
	}
	return nil
}

func (d *delivery) mkdir() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.madeDir {
		return nil
	}
	if err := os.MkdirAll(d.handoffDir, 0o700); err != nil {
		return fmt.Errorf("creating the handoff directory: %w", err)
	}
	d.madeDir = true
	return nil
}

// finishHandoff commits the credentials file (or drops it when nobody needs it) and
// then records in the journal, with one checkpoint, that the passwords of every user
// this run created are delivered.
//
// The checkpoint is written only when every created user's password is in a file
// that is in place: after a run that completed or was interrupted (users in flight
// finish their handoff first). A run stopped by an error may have journaled a user as
// created and then failed to hand the password off; without a checkpoint the next run
// hands all of this run's users off again, which costs a duplicate line at most.
func finishHandoff(cfg *config.Config, creds *handoff.Credentials, jr *journal.Journal, d *delivery, runErr error, ui *ui) error {
	if creds == nil || d == nil {
		return nil
	}
	n := creds.Count()
	switch {
	case n > 0:
		if err := creds.Commit(); err != nil {
			return fmt.Errorf("writing the credentials file %s: %w (the passwords are still in the journal %s: run the same command again)", cfg.Credentials, err, cfg.Journal)
		}
		ui.credentialsWritten(n, cfg)
	default:
		creds.Abort()
		if d.welcomes == 0 && runErr == nil {
			ui.info("nobody was created, so no credentials file was written")
		}
	}
	if d.welcomes > 0 {
		ui.info(fmt.Sprintf("%d welcome file(s), each encrypted to its user's own key, are in %s/", d.welcomes, cfg.HandoffDir))
	}
	if n == 0 && d.welcomes == 0 {
		return nil // nothing was handed off, so nothing to record
	}
	if runErr != nil && !errors.Is(runErr, batch.ErrInterrupted) {
		ui.log.Warn("the run stopped on an error, so the next run will hand this run's passwords off once more")
		return nil
	}
	if err := jr.Checkpoint(); err != nil {
		// Not fatal: the next run hands these passwords off once more.
		ui.log.Warn("could not record the handoff in the journal; the next run will hand these passwords off again", "error", err.Error())
	}
	return nil
}
