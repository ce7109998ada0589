package batch

import (
	"context"

	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/matrix"
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

// read sends a read-only request through the engine.
func (r *Runner) read(ctx context.Context, fn func(context.Context) error) error {
	return r.engine.Do(ctx, ctx, &Call{}, fn)
}

// write sends a state-changing request through the engine, under the rate limit.
func (r *Runner) write(stopCtx, reqCtx context.Context, st *Call, fn func(context.Context) error) error {
	st.Write = true
	return r.engine.Do(stopCtx, reqCtx, st, fn)
}
