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
// user may see it. It remembers whom it delivered to so that, once the credentials file
// is safely in place, the journal can record that nothing more is owed to them.
type delivery struct {
	creds        *handoff.Credentials
	homeserver   string
	handoffDir   string
	operatorCopy bool
	force        bool

	mu        sync.Mutex
	madeDir   bool
	delivered []deliveredUser
	welcomes  int
}

type deliveredUser struct{ localpart, userID string }

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
	d.mu.Lock()
	d.delivered = append(d.delivered, deliveredUser{u.Localpart, userID})
	d.mu.Unlock()
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
// then records in the journal that those users' passwords are delivered.
func finishHandoff(cfg *config.Config, creds *handoff.Credentials, jr *journal.Journal, d *delivery, runErr error, ui *ui) error {
	if creds == nil || d == nil {
		return nil
	}
	var err error
	switch {
	case creds.Count() > 0:
		if err = creds.Commit(); err != nil {
			return fmt.Errorf("writing the credentials file %s: %w (the passwords are still in the journal %s: run the same command again)", cfg.Credentials, err, cfg.Journal)
		}
		ui.credentialsWritten(creds.Count(), cfg)
	default:
		creds.Abort()
		if d.welcomes == 0 && runErr == nil {
			ui.info("nobody was created, so no credentials file was written")
		}
	}
	if d.welcomes > 0 {
		ui.info(fmt.Sprintf("%d welcome file(s), each encrypted to its user's own key, are in %s/", d.welcomes, cfg.HandoffDir))
	}
	var errs []error
	for _, u := range d.delivered {
		if err := jr.Outcome(u.localpart, u.userID, batch.StatusDelivered); err != nil {
			errs = append(errs, err)
			break
		}
	}
	if len(errs) > 0 {
		// Not fatal: the next run hands these passwords off once more.
		ui.log.Warn("could not record the handoff in the journal; the next run will hand these passwords off again", "error", errors.Join(errs...).Error())
	}
	return nil
}
