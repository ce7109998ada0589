package batch

import (
	"context"
	"errors"
	"fmt"

	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/report"
	"github.com/provision-matrix/provision/internal/roster"
)

// createAccount is every account system's path for a user who needs a new account:
// the password (the roster's, a journaled one being resumed, or a new one) is
// journaled before any request leaves; Accounts.Create sends the requests through the
// engine; the user ID the server answers is checked; the outcome is journaled and the
// password handed off. It returns an error only when the run cannot go on (the journal
// or the handoff failed).
//
// st.maybeLanded says an earlier attempt or run may already have created the account
// with st.password: then it asks the server first, by logging in with it.
func (r *Runner) createAccount(stopCtx, reqCtx context.Context, u roster.User, st *userState) (outcome, error) {
	if st.password == "" && !ssoOnly(u) {
		st.password = u.Password
		if st.password == "" {
			pw, err := r.Passwords.Generate()
			if err != nil {
				return outcome{}, fmt.Errorf("generating a password: %w", err)
			}
			st.password = pw
		}
	}
	out, err := r.create(stopCtx, reqCtx, u, st)
	if err != nil {
		return out, err
	}
	switch out.status {
	case report.Created, report.Updated:
		r.learnServerName(out.userID)
		// An earlier run may have handed this journaled password off already (its
		// outcome is not waited for, see outcome), so its welcome file may be replaced.
		if err := r.outcome(u.Localpart, out.userID, journal.StatusCreated); err != nil {
			return out, fmt.Errorf("journal: %w", err)
		}
		if st.password != "" {
			if err := r.Handoff.Deliver(u, out.userID, st.password, st.again || out.status == report.Updated); err != nil {
				return out, fmt.Errorf("handing off %s: %w", out.userID, err)
			}
		}
	case report.Exists:
		if err := r.outcome(u.Localpart, out.userID, journal.StatusExists); err != nil {
			return out, fmt.Errorf("journal: %w", err)
		}
	case report.Failed:
		if !out.unknown && !st.maybeLanded {
			if err := r.outcome(u.Localpart, out.userID, journal.StatusFailed); err != nil {
				return out, fmt.Errorf("journal: %w", err)
			}
		}
	}
	return out, nil
}

// create asks the account system to create the account, settling first whether an
// earlier attempt already did.
func (r *Runner) create(stopCtx, reqCtx context.Context, u roster.User, st *userState) (outcome, error) {
	_, settles := r.Accounts.(selfSettling)
	if st.maybeLanded && st.password != "" && !settles {
		// Ask before acting: if the account exists and takes the journaled password,
		// an earlier attempt created it.
		if o, ok := r.checkLanded(stopCtx, reqCtx, u, st); ok {
			return o, nil
		}
	}
	call := &Call{Password: st.password}
	rq := Requests{e: r.engine, stop: stopCtx, req: reqCtx, Call: call, Resumed: st.resumed, intended: &st.journaled,
		intent: func() error { return r.Journal.Intent(u.Localpart, r.userID(u.Localpart), st.password) }}
	res, err := r.Accounts.Create(stopCtx, rq, u, r.userID(u.Localpart), st.password)
	st.attempts += call.Attempts
	st.maybeLanded = st.maybeLanded || call.MaybeLanded
	var jf *journalFailed
	switch {
	case errors.As(err, &jf):
		return outcome{}, jf
	case err == nil:
		out := r.created(u, res.UserID)
		if out.status == report.Created && res.Replaced && !st.maybeLanded {
			out.status = report.Updated
			out.message = "the account appeared just before it was created; this run set its password, which is in the handoff"
		}
		if out.status == report.Created && ssoOnly(u) {
			out.message = "single sign-on only: no password"
		}
		return out, nil
	case errors.Is(err, ErrInterrupted):
		return interruptedOutcome(st), nil
	case reqCtx.Err() != nil:
		// The run itself is failing (its journal or handoff could not be written) and
		// cut this request short: the server may have acted on it.
		return outcome{status: report.Failed, unknown: true, userID: r.userID(u.Localpart),
			message: "the run stopped while this request was in flight: whether the account was created is unknown; the next run finds out"}, nil
	case errors.Is(err, ErrExists):
		if st.maybeLanded && st.password != "" && !settles {
			if o, ok := r.checkLanded(stopCtx, reqCtx, u, st); ok {
				return o, nil
			}
		}
		return outcome{status: report.Exists, userID: r.userID(u.Localpart)}, nil
	}
	return failedOutcome(err, ""), nil
}

// selfSettling is an account system whose Create settles by itself whether an
// earlier attempt made the account (see Requests.Resumed). Creating an account
// there takes several requests (MAS: the user, its upstream link, email, admin flag,
// password), so a login cannot tell how far an interrupted attempt got: a password
// that does not work yet may only be one the attempt never got to set.
type selfSettling interface{ settlesResume() }

// ssoOnly reports a user who logs in only through single sign-on: no password is
// generated, set or handed off.
func ssoOnly(u roster.User) bool { return u.SSOSubject != "" }
