package batch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
	"github.com/provision-matrix/provision/internal/report"
	"github.com/provision-matrix/provision/internal/roster"
)

const secret = "test-shared-secret"

// recorder collects report rows and handed-off credentials.
type recorder struct {
	mu        sync.Mutex
	rows      []report.Row
	creds     map[string]string // user ID → password
	again     map[string]bool
	fail      error
	onDeliver func() // if set, called on every Deliver
}

func newRecorder() *recorder {
	return &recorder{creds: map[string]string{}, again: map[string]bool{}}
}

func (r *recorder) Write(row report.Row) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, row)
	return nil
}

func (r *recorder) Deliver(u roster.User, userID, pw string, again bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	if _, dup := r.creds[userID]; dup {
		return fmt.Errorf("%s handed off twice", userID)
	}
	if r.onDeliver != nil {
		r.onDeliver()
	}
	r.creds[userID] = pw
	r.again[userID] = again
	return nil
}

// counter is a deterministic password source.
type counter struct{ n atomic.Int64 }

func (c *counter) Generate() (string, error) {
	return fmt.Sprintf("generated-password-%04d", c.n.Add(1)), nil
}

func users(n int) []roster.User {
	out := make([]roster.User, n)
	for i := range out {
		out[i] = roster.User{Line: i + 2, Localpart: fmt.Sprintf("user%03d", i), DisplayName: fmt.Sprintf("User %d", i)}
	}
	return out
}

func source(us []roster.User) Source {
	return func(yield func(roster.User) error) error {
		for _, u := range us {
			if err := yield(u); err != nil {
				return err
			}
		}
		return nil
	}
}

type fixture struct {
	srv *matrixtest.Server
	rec *recorder
	jr  *journal.Journal
	run *Runner
}

func setup(t *testing.T, o matrixtest.Options, jpath string) *fixture {
	t.Helper()
	if o.SharedSecret == "" {
		o.SharedSecret = secret
	}
	srv := matrixtest.NewServer(t, o)
	return setupWith(t, srv, jpath)
}

func setupWith(t *testing.T, srv *matrixtest.Server, jpath string) *fixture {
	t.Helper()
	client, err := matrix.NewClient(srv.URL(), srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if jpath == "" {
		jpath = filepath.Join(t.TempDir(), "journal")
	}
	jr, err := journal.Open(jpath, journal.DeriveKey([]byte(secret)), journal.Options{Homeserver: srv.URL(), SyncWindow: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jr.Close() })
	rec := newRecorder()
	return &fixture{srv: srv, rec: rec, jr: jr, run: &Runner{
		Server:    client,
		Secret:    []byte(secret),
		Passwords: &counter{},
		Journal:   jr,
		Handoff:   rec,
		Sink:      rec,
		Opts: Options{
			Concurrency: 8,
			BackoffBase: time.Millisecond,
			BackoffMax:  5 * time.Millisecond,
		},
	}}
}

// assertConverged checks what a user would: every roster user has exactly one
// account, and the password handed off for it logs in.
func (f *fixture) assertConverged(t *testing.T, us []roster.User) {
	t.Helper()
	if got := len(f.srv.Users()); got != len(us) {
		t.Errorf("server has %d accounts, want %d", got, len(us))
	}
	for _, u := range us {
		id := f.srv.UserID(u.Localpart)
		pw, ok := f.rec.creds[id]
		if !ok {
			t.Errorf("%s: no credential handed off", id)
			continue
		}
		if !f.srv.CheckPassword(u.Localpart, pw) {
			t.Errorf("%s: the handed-off password does not log in", id)
		}
	}
}

func statuses(rows []report.Row) map[report.Status]int {
	m := map[report.Status]int{}
	for _, r := range rows {
		m[r.Status]++
	}
	return m
}

func TestCreatesEveryoneInRosterOrder(t *testing.T) {
	t.Parallel()
	for _, d := range []matrixtest.Dialect{matrixtest.Synapse, matrixtest.Dendrite} {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			f := setup(t, matrixtest.Options{Dialect: d}, "")
			us := users(40)
			sum, err := f.run.Run(context.Background(), source(us))
			if err != nil {
				t.Fatal(err)
			}
			if sum.Counts[report.Created] != 40 {
				t.Errorf("summary %s, want 40 created", sum)
			}
			for i, r := range f.rec.rows {
				if r.Localpart != us[i].Localpart {
					t.Fatalf("row %d is %s, want %s: report not in roster order", i, r.Localpart, us[i].Localpart)
				}
				if r.UserID != f.srv.UserID(us[i].Localpart) || r.Attempts != 1 {
					t.Errorf("row %d = %+v", i, r)
				}
			}
			f.assertConverged(t, us)
			u, _ := f.srv.User("user001")
			if u.DisplayName != "User 1" {
				t.Errorf("displayname %q not sent", u.DisplayName)
			}
			if u.Devices != 0 {
				t.Errorf("user001 has %d devices after registration, want 0 (no stray session)", u.Devices)
			}
		})
	}
}

func TestExistingUserIsNotAFailure(t *testing.T) {
	t.Parallel()
	f := setup(t, matrixtest.Options{}, "")
	f.srv.AddUser(matrixtest.FakeUser{Localpart: "user001"}, "their-own-password")
	us := users(3)
	sum, err := f.run.Run(context.Background(), source(us))
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(f.rec.rows); got[report.Created] != 2 || got[report.Exists] != 1 {
		t.Errorf("statuses %v, want 2 created and 1 exists", got)
	}
	if _, ok := f.rec.creds[f.srv.UserID("user001")]; ok {
		t.Error("a credential was handed off for a user who already existed")
	}
	if !f.srv.CheckPassword("user001", "their-own-password") {
		t.Error("the existing user's password changed")
	}
	if sum.Counts[report.Failed] != 0 {
		t.Errorf("summary %s", sum)
	}
}

func TestFaultsConverge(t *testing.T) {
	t.Parallel()
	register := matrixtest.Route(http.MethodPost, "/_synapse/admin/v1/register")
	cases := []struct {
		name  string
		fault matrixtest.Fault
	}{
		{"server errors", matrixtest.Fault{Status: 500, Errcode: "M_UNKNOWN"}},
		{"proxy 502", matrixtest.Fault{Status: 502}},
		{"connection reset before the server sees it", matrixtest.Fault{ResetBefore: true}},
		{"response dropped after the user was created", matrixtest.Fault{DropResponse: true}},
		{"429 storm", matrixtest.Fault{Status: 429, Errcode: "M_LIMIT_EXCEEDED", RetryAfterMs: 5}},
		{"429 with Retry-After only", matrixtest.Fault{Status: 429, Errcode: "M_LIMIT_EXCEEDED", NoRetryAfterBody: true, RetryAfterHeader: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t, matrixtest.Options{Faults: matrixtest.FaultN(6, tc.fault, register)}, "")
			if tc.fault.RetryAfterHeader {
				// A 1 s Retry-After: keep this case short.
				f.run.Opts.Concurrency = 2
			}
			us := users(12)
			sum, err := f.run.Run(context.Background(), source(us))
			if err != nil {
				t.Fatal(err)
			}
			if sum.Counts[report.Created] != 12 {
				t.Errorf("summary %s, want all 12 created; rows %+v", sum, f.rec.rows)
			}
			f.assertConverged(t, us)
			if c := f.srv.Counts(); c.Registrations != 12 {
				t.Errorf("server performed %d registrations, want exactly 12", c.Registrations)
			}
		})
	}
}

func TestRefusalsFailWithErrcode(t *testing.T) {
	t.Parallel()
	register := matrixtest.Route(http.MethodPost, "/_synapse/admin/v1/register")
	f := setup(t, matrixtest.Options{Faults: matrixtest.FaultN(1, matrixtest.Fault{Status: 429, Errcode: "M_UNKNOWN"}, register)}, "")
	f.run.Opts.Concurrency = 1
	us := users(2)
	if _, err := f.run.Run(context.Background(), source(us)); err != nil {
		t.Fatal(err)
	}
	r := f.rec.rows[0]
	if r.Status != report.Failed || r.Errcode != "M_UNKNOWN" || r.Attempts != 1 {
		t.Errorf("a 429 with M_UNKNOWN gave %+v, want failed at once with its errcode", r)
	}
	if f.rec.rows[1].Status != report.Created {
		t.Errorf("one user's failure stopped the next: %+v", f.rec.rows[1])
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	register := matrixtest.Route(http.MethodPost, "/_synapse/admin/v1/register")
	f := setup(t, matrixtest.Options{Faults: matrixtest.FaultN(1000, matrixtest.Fault{Status: 503}, register)}, "")
	f.run.Opts.MaxAttempts = 3
	if _, err := f.run.Run(context.Background(), source(users(1))); err != nil {
		t.Fatal(err)
	}
	r := f.rec.rows[0]
	if r.Status != report.Failed || r.Attempts != 3 {
		t.Errorf("row %+v, want failed after 3 attempts", r)
	}
}

func TestResumeAfterResponseLost(t *testing.T) {
	t.Parallel()
	// First run: the server creates user000 but the answer never arrives, and the run
	// is then cut short (as a kill would). The journal holds the password.
	dir := t.TempDir()
	jpath := filepath.Join(dir, "journal")
	srv := matrixtest.NewServer(t, matrixtest.Options{SharedSecret: secret,
		Faults: matrixtest.FaultN(1000, matrixtest.Fault{DropResponse: true}, matrixtest.Route(http.MethodPost, "/_synapse/admin/v1/register"))})
	f := setupWith(t, srv, jpath)
	f.run.Opts.MaxAttempts = 1
	f.run.Opts.Concurrency = 1
	us := users(1)
	if _, err := f.run.Run(context.Background(), source(us)); err != nil {
		t.Fatal(err)
	}
	if f.rec.rows[0].Status != report.Failed {
		t.Fatalf("first run: %+v, want failed (answer lost)", f.rec.rows[0])
	}
	if _, ok := srv.User("user000"); !ok {
		t.Fatal("the fault should have let the server create the user")
	}
	f.jr.Close()

	// Second run, the registration endpoint still dropping answers: it asks the
	// server by logging in, finds the account takes the journaled password, and
	// hands that password off as created without registering again.
	f2 := setupWith(t, srv, jpath)
	before := srv.Counts()
	if _, err := f2.run.Run(context.Background(), source(us)); err != nil {
		t.Fatal(err)
	}
	r := f2.rec.rows[0]
	if r.Status != report.Created {
		t.Errorf("resumed run: %+v, want created", r)
	}
	// The journaled password may have been handed off by the first run (its outcome
	// is not waited for), so a welcome file holding it may be replaced.
	if !f2.rec.again[srv.UserID("user000")] {
		t.Error("the journaled password was handed off without again=true")
	}
	f2.assertConverged(t, us)
	if got := srv.Counts().Registrations - before.Registrations; got != 0 {
		t.Errorf("the resumed run registered %d more accounts, want none", got)
	}
}

func TestResumeDeliversJournaledPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	jpath := filepath.Join(dir, "journal")
	srv := matrixtest.NewServer(t, matrixtest.Options{SharedSecret: secret})
	us := users(3)

	// A crashed run left: user000 created but not handed off, user001 sent but
	// unanswered (and in fact created), user002 only an intent that never left.
	jr, err := journal.Open(jpath, journal.DeriveKey([]byte(secret)), journal.Options{Homeserver: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	srv.AddUser(matrixtest.FakeUser{Localpart: "user000", UserID: srv.UserID("user000")}, "pw-zero-journaled")
	srv.AddUser(matrixtest.FakeUser{Localpart: "user001", UserID: srv.UserID("user001")}, "pw-one-journaled")
	must(t, jr.Intent("user000", "", "pw-zero-journaled"))
	must(t, jr.Outcome("user000", srv.UserID("user000"), "created"))
	must(t, jr.Intent("user001", "", "pw-one-journaled"))
	must(t, jr.Intent("user002", "", "pw-two-journaled"))
	must(t, jr.Close())

	f := setupWith(t, srv, jpath)
	before := srv.Counts().Registrations
	if _, err := f.run.Run(context.Background(), source(us)); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"pw-zero-journaled", "pw-one-journaled", "pw-two-journaled"} {
		r := f.rec.rows[i]
		if r.Status != report.Created {
			t.Errorf("%s: %+v, want created", r.Localpart, r)
		}
		if got := f.rec.creds[srv.UserID(r.Localpart)]; got != want {
			t.Errorf("%s: handed off %q, want the journaled %q", r.Localpart, got, want)
		}
	}
	if !f.rec.again[srv.UserID("user000")] {
		t.Error("user000's re-delivery was not marked as a repeat (its welcome file may exist)")
	}
	if got := srv.Counts().Registrations - before; got != 1 {
		t.Errorf("%d registrations, want 1 (only user002)", got)
	}
	f.assertConverged(t, us)

	// A third run after the handoff was committed and checkpointed: nothing is owed,
	// nothing is sent.
	must(t, f.jr.Checkpoint())
	f.rec.rows, f.rec.creds = nil, map[string]string{}
	reqs := total(srv.Counts().Requests)
	if _, err := f.run.Run(context.Background(), source(us)); err != nil {
		t.Fatal(err)
	}
	if got := statuses(f.rec.rows); got[report.Exists] != 3 {
		t.Errorf("after delivery: %v, want 3 exists", got)
	}
	if n := total(srv.Counts().Requests) - reqs; n != 0 {
		t.Errorf("a run with everything delivered sent %d requests, want 0", n)
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestInterruptStopsNewUsersAndKeepsDone(t *testing.T) {
	t.Parallel()
	f := setup(t, matrixtest.Options{}, "")
	f.run.Opts.Concurrency = 2
	ctx, cancel := context.WithCancel(context.Background())
	var done atomic.Int32
	f.run.OnRow = func(r report.Row) {
		if done.Add(1) == 5 {
			cancel()
		}
	}
	us := users(50)
	sum, err := f.run.Run(ctx, source(us))
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
	if len(f.rec.rows) != 50 {
		t.Fatalf("%d rows, want one per roster user", len(f.rec.rows))
	}
	created := sum.Counts[report.Created]
	if created < 5 || sum.Counts[report.Skipped] == 0 || created+sum.Counts[report.Skipped] != 50 {
		t.Errorf("summary %s: want at least 5 created, the rest skipped", sum)
	}
	// Everyone the server created was handed off: nothing in flight was lost.
	if got := len(f.srv.Users()); got != created || len(f.rec.creds) != created {
		t.Errorf("server has %d users, %d handed off, report says %d created", got, len(f.rec.creds), created)
	}
}

func TestHandoffFailureStopsTheRun(t *testing.T) {
	t.Parallel()
	f := setup(t, matrixtest.Options{}, "")
	f.rec.fail = errors.New("disk full")
	_, err := f.run.Run(context.Background(), source(users(20)))
	if err == nil || !errors.Is(err, f.rec.fail) {
		t.Fatalf("err = %v, want the handoff's error", err)
	}
	if n := len(f.srv.Users()); n > f.run.Opts.Concurrency {
		t.Errorf("%d users created after the handoff failed, want at most the %d in flight", n, f.run.Opts.Concurrency)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		o       matrixtest.Options
		wantNew report.Status
		wantOld report.Status
	}{
		{"dendrite knows who exists", matrixtest.Options{Dialect: matrixtest.Dendrite}, report.Skipped, report.Exists},
		{"synapse with registration off cannot tell", matrixtest.Options{}, report.Skipped, report.Skipped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t, tc.o, "")
			f.srv.AddUser(matrixtest.FakeUser{Localpart: "user000"}, "pw-existing")
			f.run.Opts.DryRun = true
			f.run.Journal, f.run.Handoff = nil, nil
			if _, err := f.run.Run(context.Background(), source(users(2))); err != nil {
				t.Fatal(err)
			}
			if f.rec.rows[0].Status != tc.wantOld || f.rec.rows[1].Status != tc.wantNew {
				t.Errorf("rows %+v", f.rec.rows)
			}
			if n := len(f.srv.Users()); n != 1 {
				t.Errorf("a dry run created %d users", n-1)
			}
		})
	}
}

func TestConcurrencyIsBounded(t *testing.T) {
	t.Parallel()
	var inFlight, peak atomic.Int32
	srv := matrixtest.NewServer(t, matrixtest.Options{SharedSecret: secret, Faults: func(r *http.Request) matrixtest.Fault {
		if r.Method == http.MethodPost {
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
			inFlight.Add(-1)
		}
		return matrixtest.Fault{}
	}})
	f := setupWith(t, srv, "")
	f.run.Opts.Concurrency = 3
	if _, err := f.run.Run(context.Background(), source(users(30))); err != nil {
		t.Fatal(err)
	}
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("peak registrations in flight %d, want up to --concurrency 3 (and more than 1)", p)
	}
}

// TestCrashBeforeCheckpoint: a run that created users and put their passwords in a
// credentials file, but died before its journal checkpoint, owes every one of them
// their password; the next run hands them all off again without registering anyone,
// and after its own checkpoint nothing is owed.
func TestCrashBeforeCheckpoint(t *testing.T) {
	t.Parallel()
	if journal.StatusCreated != journal.Status(report.Created) {
		t.Fatalf("the journal's created status %q is not the report's %q", journal.StatusCreated, report.Created)
	}
	jpath := filepath.Join(t.TempDir(), "journal")
	srv := matrixtest.NewServer(t, matrixtest.Options{SharedSecret: secret})
	us := users(20)

	first := setupWith(t, srv, jpath)
	if _, err := first.run.Run(context.Background(), source(us)); err != nil {
		t.Fatal(err)
	}
	first.assertConverged(t, us)
	must(t, first.jr.Close()) // the crash: no checkpoint

	second := setupWith(t, srv, jpath)
	before := srv.Counts().Registrations
	if _, err := second.run.Run(context.Background(), source(us)); err != nil {
		t.Fatal(err)
	}
	if got := statuses(second.rec.rows); got[report.Created] != len(us) {
		t.Errorf("after a crash before the checkpoint: %v, want all %d created (handed off again)", got, len(us))
	}
	second.assertConverged(t, us) // the same passwords, which log in
	for _, u := range us {
		if id := srv.UserID(u.Localpart); !second.rec.again[id] {
			t.Errorf("%s handed off again without again=true", id)
		}
	}
	if n := srv.Counts().Registrations - before; n != 0 {
		t.Errorf("the second run registered %d accounts, want none", n)
	}
	must(t, second.jr.Checkpoint())
	must(t, second.jr.Close())

	third := setupWith(t, srv, jpath)
	if _, err := third.run.Run(context.Background(), source(us)); err != nil {
		t.Fatal(err)
	}
	if got := statuses(third.rec.rows); got[report.Exists] != len(us) || len(third.rec.creds) != 0 {
		t.Errorf("after the checkpoint: %v and %d handed off, want all exists and none", got, len(third.rec.creds))
	}
}
