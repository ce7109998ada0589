package batch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
	"github.com/provision-matrix/provision/internal/reconcile"
	"github.com/provision-matrix/provision/internal/report"
	"github.com/provision-matrix/provision/internal/roster"
)

const adminToken = "syt_batch_admin_token"

// memJournal is a Journal in memory, recording every call.
type memJournal struct {
	mu      sync.Mutex
	entries map[string]journal.Entry
	intents []string // localparts, in order
}

func newMemJournal() *memJournal { return &memJournal{entries: map[string]journal.Entry{}} }

func (j *memJournal) Lookup(lp string) (journal.Entry, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.entries[lp]
	return e, ok
}

func (j *memJournal) Intent(lp, userID, pw string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries[lp] = journal.Entry{Localpart: lp, UserID: userID, Password: pw}
	j.intents = append(j.intents, lp)
	return nil
}

func (j *memJournal) Outcome(lp, userID string, status journal.Status) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := j.entries[lp]
	e.Localpart, e.Done, e.Status = lp, true, status
	if userID != "" {
		e.UserID = userID
	}
	j.entries[lp] = e
	return nil
}

// handoffs collects report rows and handed-off passwords.
type handoffs struct {
	mu    sync.Mutex
	rows  []report.Row
	creds map[string]string
	again map[string]bool
}

func newHandoffs() *handoffs { return &handoffs{creds: map[string]string{}, again: map[string]bool{}} }

func (h *handoffs) Write(row report.Row) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rows = append(h.rows, row)
	return nil
}

func (h *handoffs) Deliver(u roster.User, userID, pw string, again bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.creds[userID]; dup {
		return fmt.Errorf("%s handed off twice in one run", userID)
	}
	h.creds[userID], h.again[userID] = pw, again
	return nil
}

func (h *handoffs) row(lp string) report.Row {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rows {
		if r.Localpart == lp {
			return r
		}
	}
	return report.Row{}
}

type adminFixture struct {
	srv *matrixtest.Server
	jr  *memJournal
	out *handoffs
	api *matrix.Admin
	cl  *matrix.Client
}

func newAdminFixture(t *testing.T, o matrixtest.Options) *adminFixture {
	t.Helper()
	o.AdminToken = adminToken
	srv := matrixtest.NewServer(t, o)
	cl, err := matrix.NewClient(srv.URL(), srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return &adminFixture{srv: srv, jr: newMemJournal(), out: newHandoffs(), api: cl.Admin([]byte(adminToken)), cl: cl}
}

func (f *adminFixture) runner(sync reconcile.Options) *Runner {
	return &Runner{
		API: f.api, Sessions: f.cl, Passwords: &counter{}, Journal: f.jr, Handoff: f.out, Sink: f.out,
		Opts: Options{Concurrency: 4, ServerName: f.srv.ServerName(), BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond},
		Sync: sync, Self: f.srv.UserID("admin"), PageSize: 3,
		Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() },
	}
}

// run plans and applies, failing the test on a run error.
func (f *adminFixture) run(t *testing.T, r *Runner, us []roster.User) (*reconcile.Plan, *report.Summary) {
	t.Helper()
	plan, err := r.Plan(t.Context(), source(us))
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	sum, err := r.Apply(t.Context(), plan)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	// What the command does once the credentials file is committed.
	f.out.mu.Lock()
	defer f.out.mu.Unlock()
	for id := range f.out.creds {
		lp := strings.TrimSuffix(strings.TrimPrefix(id, "@"), ":"+f.srv.ServerName())
		_ = f.jr.Outcome(lp, id, StatusDelivered)
	}
	return plan, sum
}

func writes(c matrixtest.Counts) int {
	n := 0
	for route, k := range c.Requests {
		if strings.HasPrefix(route, "PUT ") || strings.HasPrefix(route, "POST ") {
			n += k
		}
	}
	return n
}

func TestAdminCreateUpdateDeactivate(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t, matrixtest.Options{})
	f.srv.AddRoom("!general:example.org", "#general:example.org")
	f.srv.AddRoom("!ops:example.org", "")
	// Accounts provision did not create: never touched, however the roster reads.
	f.srv.AddUser(matrixtest.FakeUser{Localpart: "bot", UserType: "bot"}, "bot-password")
	f.srv.AddUser(matrixtest.FakeUser{Localpart: "sso", ExternalIDs: []matrix.ExternalID{{AuthProvider: "oidc", ExternalID: "s"}}}, "")
	// An existing account the roster names: its password must survive every run.
	f.srv.AddUser(matrixtest.FakeUser{Localpart: "old", DisplayName: "Old", Devices: 1}, "old-password")

	sync := reconcile.Options{Update: true, DeactivateMissing: true, MaxDeactivate: 10, LogoutDevices: true}
	us := []roster.User{
		{Localpart: "ann", DisplayName: "Ann", Email: "Ann@Example.org", Rooms: []string{"#general:example.org", "!ops:example.org"}},
		{Localpart: "cy", DisplayName: "Cy"},
		{Localpart: "old", DisplayName: "Old Timer", Rooms: []string{"!ops:example.org"}},
	}
	plan, sum := f.run(t, f.runner(sync), us)
	if n := plan.Counts(); n[reconcile.Create] != 2 || n[reconcile.Update] != 1 || n[reconcile.Deactivate] != 0 {
		t.Errorf("plan counts %v", n)
	}
	if sum.Counts[report.Created] != 2 || sum.Counts[report.Updated] != 1 {
		t.Errorf("summary %v", sum)
	}
	ann, _ := f.srv.User("ann")
	if ann.DisplayName != "Ann" || !slices.Equal(ann.ThreePIDs, []matrix.ThreePID{{Medium: "email", Address: "ann@example.org"}}) ||
		!slices.Contains(ann.ExternalIDs, reconcile.Marker(f.srv.UserID("ann"))) {
		t.Errorf("ann = %+v", ann)
	}
	if !f.srv.CheckPassword("ann", f.out.creds[f.srv.UserID("ann")]) {
		t.Error("ann's handed-off password does not log in")
	}
	if e, _ := f.jr.Lookup("ann"); !e.Done || e.Status != StatusDelivered || e.Password != f.out.creds[f.srv.UserID("ann")] {
		t.Errorf("journal for ann: %+v", e)
	}
	old, _ := f.srv.User("old")
	if old.DisplayName != "Old Timer" || !f.srv.CheckPassword("old", "old-password") || old.Devices != 1 || len(old.ExternalIDs) != 0 {
		t.Errorf("old = %+v: renamed, password and sessions kept, no marker added", old)
	}
	if _, handed := f.out.creds[f.srv.UserID("old")]; handed || slices.Contains(f.jr.intents, "old") {
		t.Error("a password was journaled or handed off for an existing account")
	}
	for room, want := range map[string][]string{
		"!general:example.org": {f.srv.UserID("ann")},
		"!ops:example.org":     {f.srv.UserID("ann"), f.srv.UserID("old")},
	} {
		if got := f.srv.Members(room); !slices.Equal(got, want) {
			t.Errorf("members of %s = %v, want %v", room, got, want)
		}
	}

	// Cy leaves; nothing else changes. Only Cy is deactivated: the bot, the SSO
	// account, "old" (not provision's) and the admin stay.
	f.out = newHandoffs()
	before := writes(f.srv.Counts())
	plan, sum = f.run(t, f.runner(sync), []roster.User{us[0], us[2]})
	if got := plan.Lines(); !slices.Equal(got, []string{"- @cy:example.org  deactivate"}) {
		t.Errorf("plan lines %q", got)
	}
	if sum.Counts[report.Deactivated] != 1 || sum.Counts[report.Unchanged] != 2 || sum.Total != 3 {
		t.Errorf("summary %v", sum)
	}
	if r := f.out.row("cy"); r.Status != report.Deactivated || r.UserID != f.srv.UserID("cy") {
		t.Errorf("cy's row %+v", r)
	}
	if got := writes(f.srv.Counts()) - before; got != 1 {
		t.Errorf("%d state-changing requests, want 1 (the deactivation)", got)
	}
	for _, lp := range []string{"bot", "sso", "old", "admin"} {
		if u, _ := f.srv.User(lp); u.Deactivated {
			t.Errorf("%s was deactivated", lp)
		}
	}
	if cy, _ := f.srv.User("cy"); !cy.Deactivated || cy.Erased {
		t.Errorf("cy = %+v", cy)
	}
}

func TestAdminMaxDeactivateAbortsBeforeAnything(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t, matrixtest.Options{})
	for i := range 5 {
		lp := fmt.Sprintf("gone%d", i)
		f.srv.AddUser(matrixtest.FakeUser{Localpart: lp, ExternalIDs: []matrix.ExternalID{reconcile.Marker(f.srv.UserID(lp))}}, "pw")
	}
	r := f.runner(reconcile.Options{DeactivateMissing: true, MaxDeactivate: 4})
	plan, err := r.Plan(t.Context(), source([]roster.User{{Localpart: "new"}}))
	if err != nil {
		t.Fatal(err)
	}
	before := f.srv.Counts()
	_, err = r.Apply(t.Context(), plan)
	var le *reconcile.LimitError
	if !errors.As(err, &le) || le.Count != 5 || le.Max != 4 {
		t.Fatalf("Apply = %v, want a LimitError for 5 > 4", err)
	}
	if w := writes(f.srv.Counts()) - writes(before); w != 0 {
		t.Errorf("%d state-changing requests before the abort", w)
	}
	if _, ok := f.srv.User("new"); ok {
		t.Error("the new user was created although the run aborted")
	}
}

func TestAdminJoinFailureStaysOnTheRow(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t, matrixtest.Options{})
	f.srv.AddRoom("!ok:example.org", "")
	r := f.runner(reconcile.Options{})
	f.run(t, r, []roster.User{{Localpart: "ann", Rooms: []string{"#nowhere:example.org", "!ok:example.org"}}})
	row := f.out.row("ann")
	if row.Status != report.Created || row.Errcode != "M_NOT_FOUND" || !strings.Contains(row.Error, "join #nowhere:example.org") {
		t.Errorf("row %+v: want created with the join's error", row)
	}
	if _, ok := f.srv.User("ann"); !ok || r.FailedJoins() != 1 {
		t.Errorf("account kept: %v, failed joins %d", ok, r.FailedJoins())
	}
	if got := f.srv.Members("!ok:example.org"); len(got) != 1 {
		t.Errorf("the other room was not joined: %v", got)
	}
}

// A PUT whose answer is lost is sent again: the 200 that follows means the first
// one created the account, and the row says created.
func TestAdminLostAnswerOnCreate(t *testing.T) {
	t.Parallel()
	put := func(r *http.Request) bool { return r.Method == http.MethodPut }
	f := newAdminFixture(t, matrixtest.Options{Faults: matrixtest.FaultN(1, matrixtest.Fault{DropResponse: true}, put)})
	f.run(t, f.runner(reconcile.Options{}), []roster.User{{Localpart: "ann"}})
	row := f.out.row("ann")
	if row.Status != report.Created || row.Attempts != 2 || f.out.again[f.srv.UserID("ann")] {
		t.Errorf("row %+v", row)
	}
	if !f.srv.CheckPassword("ann", f.out.creds[f.srv.UserID("ann")]) {
		t.Error("the handed-off password does not log in")
	}
}

func TestAdminRateLimitedWrites(t *testing.T) {
	t.Parallel()
	put := func(r *http.Request) bool { return r.Method == http.MethodPut }
	f := newAdminFixture(t, matrixtest.Options{Faults: matrixtest.FaultN(3,
		matrixtest.Fault{Status: 429, Errcode: "M_LIMIT_EXCEEDED", RetryAfterMs: 1}, put)})
	_, sum := f.run(t, f.runner(reconcile.Options{}), []roster.User{{Localpart: "a"}, {Localpart: "b"}})
	if sum.Counts[report.Created] != 2 || f.srv.Counts().RateLimited != 3 {
		t.Errorf("summary %v, 429s %d", sum, f.srv.Counts().RateLimited)
	}
}

// An interrupted run's journal: a password sent without an answer is handed off if
// it is live, and forgotten if it is not; nothing is sent to settle it but a login.
func TestAdminSettlesAnInterruptedRun(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t, matrixtest.Options{})
	f.srv.AddRoom("!ops:example.org", "")
	landed, lost := "landed-password-1", "lost-password-2"
	f.srv.AddUser(matrixtest.FakeUser{Localpart: "ann", ExternalIDs: []matrix.ExternalID{reconcile.Marker(f.srv.UserID("ann"))}}, landed)
	f.srv.AddUser(matrixtest.FakeUser{Localpart: "bob"}, "bobs-own-password")
	f.jr.Intent("ann", f.srv.UserID("ann"), landed)
	f.jr.Intent("bob", f.srv.UserID("bob"), lost)

	r := f.runner(reconcile.Options{})
	f.run(t, r, []roster.User{{Localpart: "ann", Rooms: []string{"!ops:example.org"}}, {Localpart: "bob"}})
	if row := f.out.row("ann"); row.Status != report.Created || f.out.creds[f.srv.UserID("ann")] != landed {
		t.Errorf("ann: row %+v, handed off %q", row, f.out.creds[f.srv.UserID("ann")])
	}
	if got := f.srv.Members("!ops:example.org"); !slices.Equal(got, []string{f.srv.UserID("ann")}) {
		t.Errorf("the interrupted creation's join was not made: %v", got)
	}
	if row := f.out.row("bob"); row.Status != report.Exists || len(f.out.creds) != 1 {
		t.Errorf("bob: row %+v, creds %v", row, f.out.creds)
	}
	if e, _ := f.jr.Lookup("bob"); !e.Done || e.Status != "exists" {
		t.Errorf("bob's journal entry %+v: the check should not repeat", e)
	}
	if !f.srv.CheckPassword("bob", "bobs-own-password") {
		t.Error("bob's password changed")
	}
	if u, _ := f.srv.User("ann"); u.Devices != 0 {
		t.Errorf("the login that checked ann's password left %d sessions", u.Devices)
	}
}

func TestAdminResetPasswords(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t, matrixtest.Options{})
	f.srv.AddUser(matrixtest.FakeUser{Localpart: "ann", Devices: 2}, "old-password")
	f.srv.AddUser(matrixtest.FakeUser{Localpart: "bob", Devices: 2}, "old-password")

	f.run(t, f.runner(reconcile.Options{ResetPasswords: true, LogoutDevices: true}), []roster.User{{Localpart: "ann"}})
	f.run(t, f.runner(reconcile.Options{ResetPasswords: true, LogoutDevices: false}), []roster.User{{Localpart: "bob"}})
	for lp, devices := range map[string]int{"ann": 0, "bob": 2} {
		u, _ := f.srv.User(lp)
		pw := f.out.creds[u.UserID]
		if !f.srv.CheckPassword(lp, pw) || u.Devices != devices || !f.out.again[u.UserID] {
			t.Errorf("%s: new password live %v, devices %d (want %d), welcome replaced %v", lp, f.srv.CheckPassword(lp, pw), u.Devices, devices, f.out.again[u.UserID])
		}
		if row := f.out.row(lp); row.Status != report.Updated {
			t.Errorf("%s: row %+v", lp, row)
		}
		if e, _ := f.jr.Lookup(lp); e.Password != pw || !e.Done {
			t.Errorf("%s: the new password was not journaled: %+v", lp, e)
		}
	}
}

// Between the plan and the PUT an account may appear (a single sign-on login makes
// one): the check just before the PUT finds it, and no password is sent.
func TestAdminAccountAppearsAfterThePlan(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t, matrixtest.Options{})
	r := f.runner(reconcile.Options{})
	plan, err := r.Plan(t.Context(), source([]roster.User{{Localpart: "ann"}}))
	if err != nil {
		t.Fatal(err)
	}
	f.srv.AddUser(matrixtest.FakeUser{Localpart: "ann"}, "anns-sso-era-password")
	if _, err := r.Apply(t.Context(), plan); err != nil {
		t.Fatal(err)
	}
	if row := f.out.row("ann"); row.Status != report.Exists || row.Attempts != 0 {
		t.Errorf("row %+v", row)
	}
	if !f.srv.CheckPassword("ann", "anns-sso-era-password") || len(f.jr.intents) != 0 {
		t.Error("a password was sent for an account that exists")
	}
}

func TestAdminPlanPagesAndReadsOnly(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t, matrixtest.Options{})
	var us []roster.User
	for i := range 10 {
		lp := fmt.Sprintf("u%02d", i)
		f.srv.AddUser(matrixtest.FakeUser{Localpart: lp, ExternalIDs: []matrix.ExternalID{reconcile.Marker(f.srv.UserID(lp))}}, "pw")
		if i%2 == 0 {
			us = append(us, roster.User{Localpart: lp, DisplayName: "New name"})
		}
	}
	r := f.runner(reconcile.Options{Update: true, DeactivateMissing: true, MaxDeactivate: -1})
	r.Journal, r.Handoff = nil, nil
	plan, err := r.Plan(t.Context(), source(us))
	if err != nil {
		t.Fatal(err)
	}
	if n := plan.Counts(); n[reconcile.Update] != 5 || n[reconcile.Deactivate] != 5 {
		t.Errorf("counts %v", n)
	}
	c := f.srv.Counts()
	if writes(c) != 0 {
		t.Errorf("a plan sent %d state-changing requests", writes(c))
	}
	// 11 accounts (with the admin) in pages of 3.
	if got := c.Requests["GET /_synapse/admin/v2/users"]; got != 4 {
		t.Errorf("%d list pages, want 4", got)
	}
}

func TestAdminNoAdminAPIFailsThePlan(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t, matrixtest.Options{Dialect: matrixtest.Dendrite, SharedSecret: "s"})
	_, err := f.runner(reconcile.Options{}).Plan(t.Context(), source([]roster.User{{Localpart: "ann"}}))
	if !errors.Is(err, matrix.ErrNoAdminAPI) || errors.Is(err, matrix.ErrNotFound) {
		t.Errorf("Plan = %v, want ErrNoAdminAPI", err)
	}
}

func TestAdminInterruptedApply(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t, matrixtest.Options{})
	r := f.runner(reconcile.Options{})
	plan, err := r.Plan(t.Context(), source(users(20)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	sum, err := r.Apply(ctx, plan)
	if !errors.Is(err, ErrInterrupted) || sum.Counts[report.Skipped] != 20 || len(f.srv.Users()) != 1 {
		t.Errorf("Apply after cancel = %v, %v, %d accounts", sum, err, len(f.srv.Users()))
	}
}
