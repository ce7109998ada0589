package batch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/reconcile"
	"github.com/provision-matrix/provision/internal/roster"
)

// pagedPlanMin is the roster size above which Plan learns who exists from the user
// list (planPaged) rather than from one GET per person. A variable so that the tests
// can run every planning scenario both ways.
var pagedPlanMin = 1000

func (r *Runner) pagedMin() int { return pagedPlanMin }

// listed is what one page entry of the user list says about an account: all that
// Diff compares but the email address, which the list leaves out.
type listed struct {
	displayName string
	admin       bool
	deactivated bool
}

// planPaged makes the plan Plan makes, for a roster of n users, from the user list
// read in pages: an account the list does not hold is created, one it holds is
// decided from what the list says, and an account is read on its own (GET) only when
// the list lacks what must be compared: its email address under --update when the
// roster gives one. Rooms are read as Plan reads them, and the accounts the roster
// does not name are read one by one for --deactivate-missing (the list carries no
// external IDs), as in Plan.
func (r *Runner) planPaged(ctx context.Context, src Source, n int) (*reconcile.Plan, error) {
	server := map[string]listed{}
	if err := r.eachListed(ctx, func(lp string, u matrix.AdminUser) {
		server[lp] = listed{displayName: u.DisplayName, admin: u.Admin, deactivated: u.Deactivated}
	}); err != nil {
		return nil, r.planError(ctx, err)
	}

	// Only the changes that do something are kept, by roster position; the quiet
	// ones (nothing to do, nothing to say) are a bit each, and Apply replays the
	// roster for them.
	plan := &reconcile.Plan{Options: r.Sync, Quiet: &reconcile.QuietRows{Roster: src}}
	var mu sync.Mutex
	acting := map[int]reconcile.Change{}
	keep := func(at int, c reconcile.Change) {
		mu.Lock()
		defer mu.Unlock()
		if reconcile.IsQuiet(c) && c.Action == plan.QuietAction() {
			plan.Quiet.Mark(at)
		} else {
			acting[at] = c
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.Opts.Concurrency)
	i := 0
	err := src(func(u roster.User) error {
		if gctx.Err() != nil {
			return gctx.Err()
		}
		if i == n {
			return fmt.Errorf("the roster changed while the plan was made: it had %d users, now more", n)
		}
		at := i
		i++
		id := r.userID(u.Localpart)
		lu, ok := server[u.Localpart]
		delete(server, u.Localpart) // what is left is not in the roster
		if ok && !lu.deactivated && r.Sync.Update && u.Email != "" {
			// The list does not carry email addresses: read the account.
			g.Go(func() error {
				c, err := r.observe(gctx, u)
				keep(at, c)
				return err
			})
			return nil
		}
		acct := reconcile.Account{}
		if ok {
			acct = reconcile.Account{Exists: true, User: matrix.AdminUser{
				UserID: id, DisplayName: lu.displayName, Admin: lu.admin, Deactivated: lu.deactivated}}
		}
		if c, ok := r.finishBegun(u, id, acct); ok {
			keep(at, c)
			return nil
		}
		r.resumed(u, &acct)
		if !reconcile.RoomsNeeded(u, acct, r.Sync) {
			keep(at, reconcile.Diff(u, id, r.Self, acct, r.Sync))
			return nil
		}
		g.Go(func() error {
			c, err := r.decide(gctx, u, id, acct)
			keep(at, c)
			return err
		})
		return nil
	})
	if werr := g.Wait(); werr != nil {
		return nil, r.planError(ctx, werr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, r.planError(ctx, err)
		}
		return nil, fmt.Errorf("reading the roster: %w", err)
	}
	if i != n {
		return nil, fmt.Errorf("the roster changed while the plan was made: it had %d users, now %d", n, i)
	}
	if err := ctx.Err(); err != nil {
		return nil, r.planError(ctx, err)
	}
	at := slices.Sorted(maps.Keys(acting))
	plan.Changes = make([]reconcile.Change, 0, len(at))
	for _, k := range at {
		plan.Changes = append(plan.Changes, acting[k])
	}
	acting = nil

	if r.Sync.DeactivateMissing {
		var candidates []string
		for lp, lu := range server {
			if !lu.deactivated {
				candidates = append(candidates, r.userID(lp))
			}
		}
		server = nil
		missing, err := r.missingOf(ctx, candidates)
		if err != nil {
			return nil, r.planError(ctx, err)
		}
		plan.Changes = append(plan.Changes, missing...)
	}
	return plan, nil
}

// ErrRosterChanged is a roster that, replayed for Apply, is not the one planned.
var ErrRosterChanged = errors.New("the roster changed since the plan was made: run again")

// eachChange gives feed the plan's changes in order, with their row numbers,
// rebuilding the quiet ones from the roster; it stops at feed's first error.
func (r *Runner) eachChange(plan *reconcile.Plan, feed func(i int, c reconcile.Change) error) error {
	if plan.Quiet == nil {
		for i, c := range plan.Changes {
			if err := feed(i, c); err != nil {
				return err
			}
		}
		return nil
	}
	i, k := 0, 0
	err := plan.Quiet.Roster(func(u roster.User) error {
		at := i
		i++
		if plan.Quiet.Is(at) {
			return feed(at, plan.QuietChange(r.userID(u.Localpart), u))
		}
		if k == len(plan.Changes) || plan.Changes[k].User.Localpart != u.Localpart {
			return fmt.Errorf("%w: %s is not where the plan had it", ErrRosterChanged, u.Localpart)
		}
		k++
		return feed(at, plan.Changes[k-1])
	})
	if err != nil {
		return err
	}
	for ; k < len(plan.Changes); k++ {
		if plan.Changes[k].User.Localpart != "" {
			return fmt.Errorf("%w: %s is missing from it", ErrRosterChanged, plan.Changes[k].User.Localpart)
		}
		if err := feed(i, plan.Changes[k]); err != nil {
			return err
		}
		i++
	}
	return nil
}
