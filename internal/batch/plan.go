package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/reconcile"
	"github.com/provision-matrix/provision/internal/roster"
	"github.com/provision-matrix/provision/internal/sanitize"
)

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
