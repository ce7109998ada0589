package batch

import (
	"context"
	"errors"
	"testing"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/reconcile"
	"github.com/provision-matrix/provision/internal/roster"
)

// loopingList is an admin API whose user list hands out the same cursors for ever.
type loopingList struct{ AdminAPI }

func (loopingList) GetUser(ctx context.Context, userID string) (matrix.AdminUser, error) {
	return matrix.AdminUser{}, matrix.ErrNotFound
}

func (loopingList) ListUsers(ctx context.Context, from string, limit int) ([]matrix.AdminUser, string, error) {
	next := map[string]string{"": "100", "100": "200", "200": "100"}[from]
	return []matrix.AdminUser{{UserID: "@x" + from + ":example.org"}}, next, nil
}

// A server whose paging never ends makes the plan fail (nothing changed) instead of
// looping for ever (issue 11, point 10).
func TestPlanStopsAtALoopingCursor(t *testing.T) {
	t.Parallel()
	r := &Runner{API: loopingList{}, Opts: Options{ServerName: "example.org"},
		Sync: reconcile.Options{DeactivateMissing: true, MaxDeactivate: -1}}
	_, err := r.Plan(t.Context(), source([]roster.User{{Localpart: "ann"}}))
	if !errors.Is(err, ErrBadPaging) {
		t.Fatalf("Plan = %v, want ErrBadPaging", err)
	}
}
