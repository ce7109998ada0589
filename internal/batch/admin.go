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
	"github.com/provision-matrix/provision/internal/roster"
	"github.com/provision-matrix/provision/internal/sanitize"
)

// AdminAPI is the Synapse admin API as admin mode uses it. *matrix.Admin satisfies it.
type AdminAPI interface {
	GetUser(ctx context.Context, userID string) (matrix.AdminUser, error)
	ListUsers(ctx context.Context, from string, limit int) ([]matrix.AdminUser, string, error)
	JoinedRooms(ctx context.Context, userID string) ([]string, error)
	ResolveAlias(ctx context.Context, alias string) (string, error)
	PutUser(ctx context.Context, userID string, u matrix.PutUser) (bool, error)
	Deactivate(ctx context.Context, userID string, erase bool) error
	Join(ctx context.Context, roomIDOrAlias, userID string) (string, error)
}

// Sessions logs in and out. Admin mode uses it only to settle whether a password that
// an interrupted run sent took effect. *matrix.Client satisfies it.
type Sessions interface {
	LoginSession(ctx context.Context, user, password string) (matrix.Session, error)
	Logout(ctx context.Context, token string) error
}

var (
	_ AdminAPI = (*matrix.Admin)(nil)
	_ Sessions = (*matrix.Client)(nil)
)

// journalPasswordSet is the journal status of a password that is live on the server
// and owed to its user: for a created account and for a reset password alike, because
// the journal's handoff checkpoint marks exactly the users this status names as
// delivered (journal.StatusCreated).
const journalPasswordSet = journal.StatusCreated

// maxJoinErrors bounds the failed joins FailedJoinErrors keeps.
const maxJoinErrors = 20

// DefaultPageSize is how many accounts one page of the user list asks for.
const DefaultPageSize = 250

// Plan reads the server and returns what must change, changing nothing: one GET per
// roster user (and their rooms when they are compared), and with DeactivateMissing
// the whole user list, paged, plus one GET per account the roster does not name (the
// list does not carry external IDs). A request that fails after its retries fails the
// plan: a guess about one account could turn into a wrong change.
//
// A roster of more than pagedPlanMin users is planned from the user list instead (see
// planPaged): the same plan, with one request per page of accounts rather than one
// per person.
func (r *Runner) Plan(ctx context.Context, src Source) (*reconcile.Plan, error) {
	r.defaults()
	if r.Opts.ServerName == "" {
		return nil, errors.New("admin mode needs the server name")
	}
	n := 0
	if err := src(func(roster.User) error { n++; return nil }); err != nil {
		return nil, fmt.Errorf("reading the roster: %w", err)
	}
	if n > r.pagedMin() {
		return r.planPaged(ctx, src, n)
	}
	var users []roster.User
	inRoster := map[string]bool{}
	if err := src(func(u roster.User) error {
		users = append(users, u)
		inRoster[u.Localpart] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading the roster: %w", err)
	}

	plan := &reconcile.Plan{Options: r.Sync, Changes: make([]reconcile.Change, len(users))}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.Opts.Concurrency)
	for i, u := range users {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			c, err := r.observe(gctx, u)
			plan.Changes[i] = c
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, r.planError(ctx, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, r.planError(ctx, err)
	}

	if r.Sync.DeactivateMissing {
		missing, err := r.missing(ctx, inRoster)
		if err != nil {
			return nil, r.planError(ctx, err)
		}
		plan.Changes = append(plan.Changes, missing...)
	}
	return plan, nil
}

func (r *Runner) planError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w before the plan was complete: %w", ErrInterrupted, context.Cause(ctx))
	}
	return err
}

// observe reads what the server holds for one roster user and decides its change.
func (r *Runner) observe(ctx context.Context, u roster.User) (reconcile.Change, error) {
	id := r.userID(u.Localpart)
	acct, err := r.readAccount(ctx, id)
	if err != nil {
		return reconcile.Change{}, err
	}
	if c, ok := r.finishBegun(u, id, acct); ok {
		return c, nil
	}
	r.resumed(u, &acct)
	return r.decide(ctx, u, id, acct)
}

// finishBegun: with an account system that settles an interrupted creation itself
// (MAS: a crash between creating the user and setting its password), an account the
// journal says a run began creating and never finished is created again, and Create
// finishes what that run began (or finds that the account is someone else's).
func (r *Runner) finishBegun(u roster.User, id string, acct reconcile.Account) (reconcile.Change, bool) {
	if _, settles := r.Accounts.(selfSettling); !settles || !acct.Exists || acct.User.Deactivated || !r.unsettled(u.Localpart) {
		return reconcile.Change{}, false
	}
	c := reconcile.Diff(u, id, r.Self, reconcile.Account{}, r.Sync)
	c.Note = "an interrupted run began creating it; this run finishes it"
	return c, true
}

// readAccount GETs one account; a 404 is an account that does not exist.
func (r *Runner) readAccount(ctx context.Context, id string) (reconcile.Account, error) {
	var acct reconcile.Account
	err := r.read(ctx, func(ctx context.Context) error {
		au, err := r.API.GetUser(ctx, id)
		switch {
		case err == nil:
			acct = reconcile.Account{Exists: true, User: au}
		case errors.Is(err, matrix.ErrNotFound):
			acct = reconcile.Account{}
		default:
			return err
		}
		return nil
	})
	return acct, err
}

// resumed marks an existing account that an interrupted run may have created.
func (r *Runner) resumed(u roster.User, acct *reconcile.Account) {
	if acct.Exists && r.Journal != nil {
		if e, ok := r.Journal.Lookup(u.Localpart); ok && owes(e) != debtNone {
			// An interrupted run may have created this account and not got to its
			// rooms: compare them even without --update.
			acct.Resumed = true
		}
	}
}

// decide reads the account's rooms when Diff compares them, then decides its change.
func (r *Runner) decide(ctx context.Context, u roster.User, id string, acct reconcile.Account) (reconcile.Change, error) {
	if reconcile.RoomsNeeded(u, acct, r.Sync) {
		if err := r.read(ctx, func(ctx context.Context) error {
			rooms, err := r.API.JoinedRooms(ctx, id)
			acct.Rooms = rooms
			return err
		}); err != nil {
			return reconcile.Change{}, err
		}
		acct.Aliases = map[string]string{}
		for _, room := range append(slices.Clip(u.Rooms), r.managedRooms()...) {
			if _, done := acct.Aliases[room]; !done && strings.HasPrefix(room, "#") {
				acct.Aliases[room] = r.resolve(ctx, room)
			}
		}
	}
	return reconcile.Diff(u, id, r.Self, acct, r.Sync), nil
}

// resolve returns the room ID of an alias, or "" when it does not resolve; the join
// then reports why. Each alias is asked once per run.
func (r *Runner) resolve(ctx context.Context, alias string) string {
	r.aliasMu.Lock()
	id, ok := r.aliases[alias]
	r.aliasMu.Unlock()
	if ok {
		return id
	}
	err := r.read(ctx, func(ctx context.Context) error {
		var err error
		id, err = r.API.ResolveAlias(ctx, alias)
		return err
	})
	if err != nil {
		r.Log.Debug("room alias did not resolve", "alias", alias, "error", err.Error())
		id = ""
	}
	r.aliasMu.Lock()
	r.aliases[alias] = id
	r.aliasMu.Unlock()
	return id
}

// missing pages through every account and decides, for each that the roster does not
// name, whether provision deactivates it.
func (r *Runner) missing(ctx context.Context, inRoster map[string]bool) ([]reconcile.Change, error) {
	var candidates []string
	if err := r.eachListed(ctx, func(lp string, u matrix.AdminUser) {
		if !u.Deactivated && !inRoster[lp] {
			candidates = append(candidates, u.UserID)
		}
	}); err != nil {
		return nil, err
	}
	return r.missingOf(ctx, candidates)
}

// eachListed pages through every account of the server, giving fn those of this
// server with their localparts.
func (r *Runner) eachListed(ctx context.Context, fn func(lp string, u matrix.AdminUser)) error {
	suffix := ":" + r.Opts.ServerName
	from := ""
	pages := cursors{}
	for {
		var page []matrix.AdminUser
		var next string
		if err := r.read(ctx, func(ctx context.Context) error {
			var err error
			page, next, err = r.API.ListUsers(ctx, from, r.PageSize)
			return err
		}); err != nil {
			return err
		}
		for _, u := range page {
			if lp, ok := strings.CutSuffix(strings.TrimPrefix(u.UserID, "@"), suffix); ok {
				fn(lp, u)
			}
		}
		if next == "" {
			return nil
		}
		if err := pages.next(next); err != nil {
			return err
		}
		from = next
	}
}

// missingOf reads each candidate (an account the roster does not name) and decides
// whether provision deactivates it, in user ID order.
func (r *Runner) missingOf(ctx context.Context, candidates []string) ([]reconcile.Change, error) {
	changes := make([]reconcile.Change, len(candidates))
	listed := make([]bool, len(candidates))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.Opts.Concurrency)
	for i, id := range candidates {
		g.Go(func() error {
			// The list leaves out external IDs, which say whether provision created
			// the account: read the account itself.
			return r.read(gctx, func(ctx context.Context) error {
				au, err := r.API.GetUser(ctx, id)
				if errors.Is(err, matrix.ErrNotFound) {
					return nil // gone since the list was read
				}
				if err != nil {
					return err
				}
				changes[i], listed[i] = reconcile.Missing(au, r.Self, r.Sync)
				return nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []reconcile.Change
	for i, c := range changes {
		if listed[i] {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b reconcile.Change) int { return strings.Compare(a.UserID, b.UserID) })
	return out, nil
}

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

// read sends a read-only request through the engine.
func (r *Runner) read(ctx context.Context, fn func(context.Context) error) error {
	return r.engine.Do(ctx, ctx, &Call{}, fn)
}

// write sends a state-changing request through the engine, under the rate limit.
func (r *Runner) write(stopCtx, reqCtx context.Context, st *Call, fn func(context.Context) error) error {
	st.Write = true
	return r.engine.Do(stopCtx, reqCtx, st, fn)
}

// maxCursor bounds a paging cursor: Synapse's are numbers, MAS's ULIDs.
const maxCursor = 1024

// cursors follows a server's paging cursors: one it has given before, or one no
// server would give, means its list never ends, and reading on would loop for ever.
type cursors map[string]bool

// ErrBadPaging is a user list whose pages do not end.
var ErrBadPaging = errors.New("the server's user list does not end")

func (c cursors) next(cursor string) error {
	switch {
	case len(cursor) > maxCursor:
		return fmt.Errorf("%w: it gave a paging cursor of %d bytes", ErrBadPaging, len(cursor))
	case c[cursor]:
		return fmt.Errorf("%w: it gave the paging cursor %q twice", ErrBadPaging, sanitize.Line(cursor, 40))
	}
	c[cursor] = true
	return nil
}
