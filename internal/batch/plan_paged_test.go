package batch

import "testing"

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
