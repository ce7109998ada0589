package batch

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
	"github.com/provision-matrix/provision/internal/reconcile"
	"github.com/provision-matrix/provision/internal/report"
	"github.com/provision-matrix/provision/internal/roster"
)

// TestAdminPaged runs the admin-mode tests again with every roster planned from the
// user list (planPaged), which Plan uses only for large rosters: both ways must make
// the same plan, rows and report. Not parallel itself: it changes pagedPlanMin until
// its subtests (parallel among themselves) are done, and Go runs the top-level
// parallel tests only after it.
func TestAdminPaged(t *testing.T) {
	old := pagedPlanMin
	pagedPlanMin = -1
	t.Cleanup(func() { pagedPlanMin = old })
	for name, test := range map[string]func(*testing.T){
		"CreateUpdateDeactivate":       TestAdminCreateUpdateDeactivate,
		"MaxDeactivateAbortsBeforeAny": TestAdminMaxDeactivateAbortsBeforeAnything,
		"JoinFailureStaysOnTheRow":     TestAdminJoinFailureStaysOnTheRow,
		"LostAnswerOnCreate":           TestAdminLostAnswerOnCreate,
		"RateLimitedWrites":            TestAdminRateLimitedWrites,
		"SettlesAnInterruptedRun":      TestAdminSettlesAnInterruptedRun,
		"ResetPasswords":               TestAdminResetPasswords,
		"AccountAppearsAfterThePlan":   TestAdminAccountAppearsAfterThePlan,
		"PlanPagesAndReadsOnly":        TestAdminPlanPagesAndReadsOnly,
		"NoAdminAPIFailsThePlan":       TestAdminNoAdminAPIFailsThePlan,
		"InterruptedApply":             TestAdminInterruptedApply,
		"PlanStopsAtALoopingCursor":    TestPlanStopsAtALoopingCursor,
	} {
		t.Run(name, test)
	}
}

// pagedFixture: a server holding n provision-made accounts u0000…, three more that
// the roster no longer names, and a roster of the n with u0005's name changed.
func pagedFixture(t *testing.T, n int) (*adminFixture, []roster.User) {
	f := newAdminFixture(t, matrixtest.Options{})
	var us []roster.User
	for i := range n + 3 {
		lp := fmt.Sprintf("u%04d", i)
		f.srv.AddUser(matrixtest.FakeUser{Localpart: lp, DisplayName: "User " + lp,
			ExternalIDs: []matrix.ExternalID{reconcile.Marker(f.srv.UserID(lp))}}, "")
		if i < n {
			us = append(us, roster.User{Localpart: lp, DisplayName: "User " + lp})
		}
	}
	us[5].DisplayName = "Renamed"
	us = append(us, roster.User{Localpart: "newcomer"})
	return f, us
}

func TestPagedPlanReadsOnlyWhatTheListLacks(t *testing.T) {
	t.Parallel()
	f, us := pagedFixture(t, pagedPlanMin+200)
	r := f.runner(reconcile.Options{Update: true, DeactivateMissing: true, MaxDeactivate: -1})
	r.PageSize = 100
	plan, sum := f.run(t, r, us)
	n := plan.Counts()
	if n[reconcile.Unchanged] != len(us)-2 || n[reconcile.Update] != 1 || n[reconcile.Create] != 1 || n[reconcile.Deactivate] != 3 {
		t.Errorf("counts %v", n)
	}
	// Only what acts is held; every roster user still gets its row.
	if len(plan.Changes) != 5 || plan.Len() != len(us)+3 || sum.Total != plan.Len() {
		t.Errorf("%d changes held, Len %d, %d rows; want 5, %d, %d", len(plan.Changes), plan.Len(), sum.Total, len(us)+3, len(us)+3)
	}
	if got := f.out.row("u0001").Status; got != report.Unchanged {
		t.Errorf("u0001: %s, want unchanged", got)
	}
	// One GET per account the roster does not name (external IDs), none for the rest.
	if got := f.srv.Counts().Requests["GET /_synapse/admin/v2/users/{userID}"]; got > 3+2 {
		t.Errorf("%d accounts read one by one, want the 3 missing ones (and the preflight's)", got)
	}
}

func TestPagedApplyRefusesAChangedRoster(t *testing.T) {
	t.Parallel()
	f, us := pagedFixture(t, pagedPlanMin+10)
	r := f.runner(reconcile.Options{Update: true, MaxDeactivate: -1})
	plan, err := r.Plan(t.Context(), source(us))
	if err != nil {
		t.Fatal(err)
	}
	plan.Quiet.Roster = source(slices.Delete(slices.Clone(us), 3, 4))
	if _, err := r.Apply(t.Context(), plan); !errors.Is(err, ErrRosterChanged) {
		t.Fatalf("apply of a plan whose roster changed: %v, want ErrRosterChanged", err)
	}
}
