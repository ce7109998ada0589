package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/reconcile"
	"github.com/provision-matrix/provision/internal/report"
)

// Apply carries out a plan. It refuses a plan over its deactivation limit before
// sending anything. Rows come out in the plan's order; one account's failure is its
// row, never an error. Cancelling ctx starts nothing new, lets requests in flight
// finish, and reports the rest as skipped (the returned error wraps ErrInterrupted).
func (r *Runner) Apply(ctx context.Context, plan *reconcile.Plan) (*report.Summary, error) {
	r.defaults()
	if err := plan.CheckLimit(); err != nil {
		return nil, err
	}
	if r.Journal == nil || r.Handoff == nil {
		return nil, errors.New("applying a plan needs the journal and the handoff")
	}
	sum := report.NewSummary(r.Now())
	ord := reportRows(r.Opts.Concurrency, sum, r.OnRow, r.Sink, nil)
	g, gctx := errgroup.WithContext(context.WithoutCancel(ctx))
	g.SetLimit(r.Opts.Concurrency)
	interrupted := false
	feedErr := r.eachChange(plan, func(i int, c reconcile.Change) error {
		if err := ord.reserve(gctx, i); err != nil {
			return err
		}
		if ctx.Err() != nil || gctx.Err() != nil {
			interrupted = interrupted || ctx.Err() != nil
			row := r.baseRow(c)
			row.Status, row.Error = report.Skipped, join(row.Error, "interrupted before it started: run the same command again to finish")
			return ord.done(i, row)
		}
		g.Go(func() error {
			row, err := r.apply(ctx, gctx, c)
			if err != nil {
				_ = ord.done(i, stoppedRow(row, c.User.Localpart, err))
				return err
			}
			return ord.done(i, row)
		})
		return nil
	})
	gErr := g.Wait()
	sum.Finished = r.Now()
	switch {
	case gErr != nil:
		return sum, gErr
	case ord.err != nil:
		return sum, ord.err
	case feedErr != nil:
		return sum, feedErr
	case interrupted || ctx.Err() != nil:
		return sum, fmt.Errorf("%w: %w", ErrInterrupted, context.Cause(ctx))
	}
	return sum, nil
}

// baseRow is a change's row before anything is done.
func (r *Runner) baseRow(c reconcile.Change) report.Row {
	row := report.Row{Localpart: c.User.Localpart, UserID: c.UserID}
	if row.Localpart == "" {
		row.Localpart = strings.TrimPrefix(strings.TrimSuffix(c.UserID, ":"+r.Opts.ServerName), "@")
	}
	if c.User.Original != "" {
		row.Error = fmt.Sprintf("written as %q in the roster; user IDs are lower case", c.User.Original)
	}
	return row
}

// debt is what the journal says this run owes an existing account's user.
type debt int

const (
	debtNone    debt = iota
	debtDeliver      // a password is live on the server and was never handed off
	debtUnknown      // a password was sent and no answer recorded: it may be live
)

// unsettled reports whether the journal holds an intent for the user with no
// outcome, or a failed one: an earlier run may have begun creating the account.
func (r *Runner) unsettled(localpart string) bool {
	if r.Journal == nil || localpart == "" {
		return false
	}
	e, ok := r.Journal.Lookup(localpart)
	return ok && (!e.Done || e.Status == journal.StatusFailed)
}

func owes(e journal.Entry) debt {
	switch {
	case e.Password == "":
		return debtNone
	case e.Done && e.Status == journalPasswordSet:
		return debtDeliver
	case e.Done && e.Status != journal.StatusFailed:
		return debtNone // delivered, or settled as not ours
	}
	return debtUnknown
}

// apply carries out one change. stopCtx ends waiting; reqCtx bounds requests (it ends
// only when the run itself fails). An error is returned only when the run cannot go
// on (journal, handoff).
func (r *Runner) apply(stopCtx, reqCtx context.Context, c reconcile.Change) (report.Row, error) {
	row := r.baseRow(c)
	switch c.Action {
	case reconcile.Create:
		return r.createChange(stopCtx, reqCtx, c, row)
	case reconcile.Deactivate:
		st := &Call{Write: true}
		err := r.write(stopCtx, reqCtx, st, func(ctx context.Context) error { return r.API.Deactivate(ctx, c.UserID, c.Erase) })
		row.Attempts = st.Attempts
		if err != nil {
			return r.failedRow(row, err, st), nil
		}
		row.Status = report.Deactivated
		if c.Erase {
			row.Error = join(row.Error, "erased")
		}
		return row, nil
	case reconcile.Keep:
		row.Status, row.Error = report.Skipped, join(row.Error, "not in the roster but kept: "+c.Note)
		return row, nil
	}

	// The account exists. First what an interrupted run may owe its user (nothing,
	// if the account has been deactivated since: its password is gone).
	settled := false
	if c.Action != reconcile.Skip {
		var err error
		if settled, err = r.settle(stopCtx, reqCtx, c, &row); err != nil {
			return row, err
		}
	}
	switch c.Action {
	case reconcile.Skip:
		row.Status, row.Error = report.Skipped, join(row.Error, c.Note)
	case reconcile.Unchanged:
		row.Status = report.Unchanged
	case reconcile.Exists:
		row.Status = report.Exists
	case reconcile.Update:
		if err := r.update(stopCtx, reqCtx, c, settled, &row); err != nil {
			return row, err
		}
	}
	if settled && row.Status != report.Failed {
		// The password handed off is this account's: report it as what the earlier
		// run was doing, which the options tell (a scheduled job keeps its flags).
		if r.Sync.ResetPasswords {
			row.Status = report.Updated
		} else {
			row.Status = report.Created
		}
	}
	return row, nil
}

// settle hands off a password an interrupted run set on this account and did not
// hand off, after making sure it is live. It reports whether it did.
func (r *Runner) settle(stopCtx, reqCtx context.Context, c reconcile.Change, row *report.Row) (bool, error) {
	if c.User.Localpart == "" {
		return false, nil
	}
	e, ok := r.Journal.Lookup(c.User.Localpart)
	if !ok {
		return false, nil
	}
	switch owes(e) {
	case debtNone:
		return false, nil
	case debtUnknown:
		live, known := r.passwordLive(stopCtx, reqCtx, c.User.Localpart, e.Password)
		if !known {
			r.Log.Warn("could not tell whether an interrupted run's password took effect; the next run asks again", "user", c.UserID)
			return false, nil
		}
		if !live {
			// Not ours, or never set: nothing is owed, now or later.
			if err := r.Journal.Outcome(c.User.Localpart, c.UserID, journal.StatusExists); err != nil {
				return false, fmt.Errorf("journal: %w", err)
			}
			return false, nil
		}
	}
	if err := r.Handoff.Deliver(c.User, c.UserID, e.Password, true); err != nil {
		return false, fmt.Errorf("handing off %s: %w", c.UserID, err)
	}
	// Recorded again in this run, so that this run's handoff checkpoint covers it.
	if err := r.Journal.Outcome(c.User.Localpart, c.UserID, journalPasswordSet); err != nil {
		return false, fmt.Errorf("journal: %w", err)
	}
	row.Error = join(row.Error, "its password was set by an earlier, interrupted run and is in this run's handoff")
	return true, nil
}

// passwordLive logs in with password: known is false when the question could not be
// settled (the server did not answer, or does not allow password logins).
func (r *Runner) passwordLive(stopCtx, reqCtx context.Context, localpart, password string) (live, known bool) {
	_, live, known, _ = passwordLive(stopCtx, reqCtx, r.engine, r.Sessions, localpart, password, r.Log)
	return live, known
}

// createChange makes a new account through the per-user core (createAccount), then
// joins it to its rooms.
func (r *Runner) createChange(stopCtx, reqCtx context.Context, c reconcile.Change, row report.Row) (report.Row, error) {
	st := userState{}
	if _, settles := r.Accounts.(selfSettling); settles && r.unsettled(c.User.Localpart) {
		// Go on with the interrupted run's password: if that run set it, it is the
		// one the account has.
		e, _ := r.Journal.Lookup(c.User.Localpart)
		st = userState{password: e.Password, journaled: e.Password != "", again: true, maybeLanded: true, resumed: true}
	}
	out, err := r.createAccount(stopCtx, reqCtx, c.User, &st)
	if err != nil {
		row.Status = out.status
		return row, err
	}
	row.Attempts = st.attempts
	row.Status, row.Errcode = out.status, out.errcode
	if out.userID != "" {
		row.UserID = out.userID
	}
	msg := out.message
	if out.status == report.Exists {
		msg = "created by someone else after the plan was made; nothing was sent"
	}
	row.Error = join(row.Error, scrub(msg, st.password))
	if out.status == report.Created || out.status == report.Updated {
		r.joinRooms(stopCtx, reqCtx, c, &row)
	}
	return row, nil
}

// update changes an existing account: the fields that differ, the password when a
// reset is asked for (journaled first), then the joins.
func (r *Runner) update(stopCtx, reqCtx context.Context, c reconcile.Change, settled bool, row *report.Row) error {
	put := c.Put
	var pw string
	if c.ResetPassword && !settled {
		pw = c.User.Password
		if pw == "" {
			var err error
			if pw, err = r.Passwords.Generate(); err != nil {
				return fmt.Errorf("generating a password: %w", err)
			}
		}
		if err := r.Journal.Intent(c.User.Localpart, c.UserID, pw); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		put.Password = &pw
		put.LogoutDevices = &c.LogoutDevices
	}
	row.Status = report.Updated
	if put == (matrix.PutUser{}) {
		r.joinRooms(stopCtx, reqCtx, c, row)
		r.leaveRooms(stopCtx, reqCtx, c, row)
		return nil
	}
	st := &Call{Write: true, Password: pw}
	err := r.write(stopCtx, reqCtx, st, func(ctx context.Context) error {
		_, err := r.API.PutUser(ctx, c.UserID, put)
		return err
	})
	row.Attempts += st.Attempts
	if err != nil {
		if pw != "" && !st.MaybeLanded {
			if jerr := r.Journal.Outcome(c.User.Localpart, c.UserID, journal.StatusFailed); jerr != nil {
				return fmt.Errorf("journal: %w", jerr)
			}
		}
		*row = r.failedRow(*row, err, st)
		return nil
	}
	if pw != "" {
		if err := r.Journal.Outcome(c.User.Localpart, c.UserID, journalPasswordSet); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		// The account's earlier welcome file, if any, holds a password that no
		// longer works: replace it.
		if err := r.Handoff.Deliver(c.User, c.UserID, pw, true); err != nil {
			return fmt.Errorf("handing off %s: %w", c.UserID, err)
		}
		row.Error = join(row.Error, "password reset; the new one is in the handoff")
	}
	r.joinRooms(stopCtx, reqCtx, c, row)
	r.leaveRooms(stopCtx, reqCtx, c, row)
	return nil
}

// joinRooms joins the account to the change's rooms. A failed join stays on the row
// (errcode and error) and undoes nothing.
func (r *Runner) joinRooms(stopCtx, reqCtx context.Context, c reconcile.Change, row *report.Row) {
	var failed []string
	for _, room := range c.Joins {
		st := &Call{Write: true}
		err := r.write(stopCtx, reqCtx, st, func(ctx context.Context) error {
			_, err := r.API.Join(ctx, room, c.UserID)
			return err
		})
		row.Attempts += st.Attempts
		if err == nil {
			continue
		}
		code, msg := errText(err)
		if errors.Is(err, ErrInterrupted) {
			msg = "interrupted: run the same command again to join it"
		}
		if row.Errcode == "" {
			row.Errcode = code
		}
		r.failedJoins.Add(1)
		failed = append(failed, "join "+room+": "+msg)
		r.joinMu.Lock()
		if len(r.joinErrs) < maxJoinErrors {
			r.joinErrs = append(r.joinErrs, c.UserID+": join "+room+": "+msg)
		}
		r.joinMu.Unlock()
	}
	if len(failed) > 0 {
		row.Error = join(row.Error, strings.Join(failed, "; "))
	}
}

// FailedJoins is the number of room joins that failed in Apply. Their accounts are
// fine (created or updated): the joins are on their rows.
func (r *Runner) FailedJoins() int { return int(r.failedJoins.Load()) }

// FailedJoinErrors describes the first failed joins, "@u:hs: join #room: why".
func (r *Runner) FailedJoinErrors() []string {
	r.joinMu.Lock()
	defer r.joinMu.Unlock()
	return slices.Clone(r.joinErrs)
}

func (r *Runner) failedRow(row report.Row, err error, st *Call) report.Row {
	if errors.Is(err, ErrInterrupted) {
		row.Status = report.Skipped
		msg := "interrupted before it finished: run the same command again to finish"
		if st.MaybeLanded {
			msg = "interrupted while the server's answer was unknown: run the same command again, which will find out"
		}
		row.Error = join(row.Error, msg)
		return row
	}
	code, msg := errText(err)
	row.Status, row.Errcode, row.Error = report.Failed, code, join(row.Error, msg)
	return row
}
