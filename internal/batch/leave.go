package batch

import (
	"context"
	"errors"
	"strings"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/reconcile"
	"github.com/provision-matrix/provision/internal/report"
)

var _ Leaver = (*matrix.Admin)(nil)

// Leaver makes a user leave rooms the way an admin can on Synapse: log in as the
// user (the admin API's login-as-user), leave with that token, log the token out.
// *matrix.Admin satisfies it (LoginAs, and its Client's Leave and Logout); an
// AdminAPI without it cannot apply a plan with leaves, and says so on each row.
type Leaver interface {
	LoginAs(ctx context.Context, userID string) (string, error)
	LeaveWith(ctx context.Context, token, roomID string) error
	LogoutToken(ctx context.Context, token string) error
}

// errNoLeave: the admin API in use cannot make users leave rooms.
var errNoLeave = errors.New("this account system cannot make users leave rooms")

func (r *Runner) managedRooms() []string {
	if !r.Sync.LeaveDropped {
		return nil
	}
	return r.Sync.ManagedRooms
}

// leaveRooms makes the account leave the change's rooms. Each of the three steps goes
// through the request engine (retries, back-pressure, the rate limit); the user's
// token is logged out even when a leave fails. Failures stay on the row, like
// failed joins, and count with them: the account itself is fine.
func (r *Runner) leaveRooms(stopCtx, reqCtx context.Context, c reconcile.Change, row *report.Row) {
	if len(c.LeaveIDs) == 0 {
		return
	}
	lv, ok := r.API.(Leaver)
	fail := func(room string, err error) {
		code, msg := errText(err)
		if errors.Is(err, ErrInterrupted) {
			msg = "interrupted: run the same command again to leave it"
		}
		if row.Errcode == "" {
			row.Errcode = code
		}
		r.failedJoins.Add(1)
		row.Error = join(row.Error, "leave "+room+": "+msg)
		r.joinMu.Lock()
		if len(r.joinErrs) < maxJoinErrors {
			r.joinErrs = append(r.joinErrs, c.UserID+": leave "+room+": "+msg)
		}
		r.joinMu.Unlock()
	}
	if !ok {
		for _, room := range c.Leaves {
			fail(room, errNoLeave)
		}
		return
	}
	var token string
	st := &Call{Write: true}
	err := r.write(stopCtx, reqCtx, st, func(ctx context.Context) error {
		var err error
		token, err = lv.LoginAs(ctx, c.UserID)
		return err
	})
	row.Attempts += st.Attempts
	if err != nil {
		for _, room := range c.Leaves {
			fail(room, err)
		}
		return
	}
	for i, id := range c.LeaveIDs {
		st := &Call{Write: true, Password: token} // Password: scrubbed from any message
		err := r.write(stopCtx, reqCtx, st, func(ctx context.Context) error { return lv.LeaveWith(ctx, token, id) })
		row.Attempts += st.Attempts
		if err != nil {
			fail(c.Leaves[i], err)
		}
	}
	// Logged out even when the run is stopping: a live token acting as the user must
	// not outlive the run. reqCtx ends only when the run itself fails.
	st = &Call{Write: true, Password: token}
	if err := r.write(context.WithoutCancel(stopCtx), reqCtx, st, func(ctx context.Context) error { return lv.LogoutToken(ctx, token) }); err != nil {
		r.Log.Warn("could not log out the token used to leave rooms as the user; it stays valid until an admin removes it",
			"user", c.UserID, "error", strings.ReplaceAll(err.Error(), token, "[REDACTED]"))
	}
}
