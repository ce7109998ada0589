package handoff

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/provision-matrix/provision/internal/roster"
)

// Delivery hands each created user's password off: to the user's own welcome file
// when the roster names their key, and to the operator's credentials file unless only
// the user may see it. It keeps no list of whom it delivered to: once the credentials
// file is safely in place, one journal checkpoint records that nothing more is owed to
// any user this run created (Finish).
//
// That is the last step of the crash-safety protocol whose first steps are in the
// batch package: journal the password, send it, journal the outcome, Deliver; then
// Finish commits the files and checkpoints the journal. A crash anywhere before the
// checkpoint leaves every password of the run in the journal, owed.
type Delivery struct {
	Credentials  *Credentials
	Homeserver   string
	HandoffDir   string
	OperatorCopy bool // users with their own key also go in the operator's file

	mu       sync.Mutex
	madeDir  bool
	welcomes int
	files    []string // the first welcome files written beside an existing one
}

// Deliver hands one user's password off. again says the same password may have been
// handed off before (a resumed run): it changes nothing, since no file is ever
// replaced, but is part of the batch's contract.
func (d *Delivery) Deliver(u roster.User, userID, pw string, again bool) error {
	toOperator := true
	if u.Recipient != "" {
		rcpt, err := ParseRecipient(u.Recipient)
		if err != nil {
			return fmt.Errorf("recipient of %s: %w", u.Localpart, err)
		}
		if err := d.mkdir(); err != nil {
			return err
		}
		if _, err := WriteWelcome(d.HandoffDir, u.Localpart, rcpt, Welcome{
			Homeserver: d.Homeserver, UserID: userID, Password: pw,
		}); err != nil {
			return err
		}
		d.mu.Lock()
		d.welcomes++
		d.mu.Unlock()
		toOperator = d.OperatorCopy
	}
	if toOperator {
		if err := d.Credentials.Add(userID, pw, d.Homeserver); err != nil {
			return err
		}
	}
	return nil
}

func (d *Delivery) mkdir() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.madeDir {
		return nil
	}
	if err := os.MkdirAll(d.HandoffDir, 0o700); err != nil {
		return fmt.Errorf("creating the handoff directory: %w", err)
	}
	d.madeDir = true
	return nil
}

// Checkpointer records that every password a session journaled as created is handed
// off. *journal.Journal satisfies it.
type Checkpointer interface {
	Checkpoint() error
}

// Finished says what Finish did.
type Finished struct {
	// Credentials is the committed credentials file ("" when nobody needed one), and
	// Count the passwords in it.
	Credentials string
	Count       int
	// Welcomes is how many welcome files were written into the handoff directory.
	Welcomes int
	// Checkpointed: the journal now says these passwords are handed off. When false
	// after a handoff, the next run hands them off once more (ErrNoCheckpoint says why).
	Checkpointed bool
	NoCheckpoint error
}

// ErrRunFailed is why Finish does not checkpoint after a run that stopped on an
// error: a user may have been journaled as created and not handed off.
var ErrRunFailed = errors.New("the run stopped on an error")

// Finish commits the credentials file (or drops it when nobody needs it) and then
// records in the journal, with one checkpoint, that the passwords of every user this
// run created are delivered.
//
// The checkpoint is written only when every created user's password is in a file
// that is in place: after a run that completed or was interrupted (users in flight
// finish their handoff first), not after one stopped by an error (runFailed): that
// run may have journaled a user as created and then failed to hand the password off;
// without a checkpoint the next run hands all of this run's users off again, which
// costs a duplicate line at most. An error is returned only when the credentials
// file cannot be written: its passwords are then still in the journal.
func (d *Delivery) Finish(jr Checkpointer, runFailed bool) (Finished, error) {
	var f Finished
	f.Count = d.Credentials.Count()
	if f.Count > 0 {
		if err := d.Credentials.Commit(); err != nil {
			return f, err
		}
		f.Credentials = d.Credentials.Path()
	} else {
		d.Credentials.Abort()
	}
	d.mu.Lock()
	f.Welcomes = d.welcomes
	d.mu.Unlock()
	switch {
	case f.Count == 0 && f.Welcomes == 0:
		return f, nil // nothing was handed off, so nothing to record
	case runFailed:
		f.NoCheckpoint = ErrRunFailed
		return f, nil
	}
	if err := jr.Checkpoint(); err != nil {
		// Not fatal: the next run hands these passwords off once more.
		f.NoCheckpoint = err
		return f, nil
	}
	f.Checkpointed = true
	return f, nil
}
