package batch

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/matrixtest"
	"github.com/provision-matrix/provision/internal/report"
)

// A server that answers for the wrong user, for none, or with text that would drive a
// terminal or a spreadsheet must not label a password with it (issue 11, point 6).
func TestCheckUserID(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		userID, server string
		ok             bool
	}{
		{"@alice:example.org", "example.org", true},
		{"@alice:example.org", "", true},
		{"@alice:example.org:8448", "example.org:8448", true},
		{"", "example.org", false},
		{"@mallory:evil.example", "example.org", false},
		{"@mallory:example.org", "example.org", false},
		{"@alice:evil.example", "example.org", false},
		{"@alice:example.org\n=cmd|' /C calc'!A0", "example.org", false},
		{"@alice:example.org\x1b[2J", "", false},
		{"alice:example.org", "", false},
		{"@alice", "", false},
		{"@alice:", "", false},
		{"@alice:" + strings.Repeat("x", 300), "", false},
	} {
		err := CheckUserID(c.userID, "alice", c.server)
		if (err == nil) != c.ok {
			t.Errorf("CheckUserID(%q, alice, %q) = %v, want ok=%v", c.userID, c.server, err, c.ok)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\n\x1b") {
			t.Errorf("the error carries the server's control characters: %q", err)
		}
	}
}

// A password the server echoes back, JSON-escaped as a request body is, never reaches
// a report row (issue 11, point 10).
func TestScrubEscapedPassword(t *testing.T) {
	t.Parallel()
	pw := `a<b>&c"d\e'f`
	for _, echo := range []string{
		`{"password":"a\u003cb\u003e\u0026c\"d\\e'f"}`,
		`{"password":"a<b>&c\"d\\e'f"}`,
		pw,
	} {
		if got := scrub("bad request: "+echo, pw); strings.Contains(got, "d\\e") || strings.Contains(got, "a<b") || strings.Contains(got, `a\u003cb`) {
			t.Errorf("scrub left the password in %q", got)
		}
	}
}

// A server that creates the account but answers with another user's ID, none, or one
// carrying escape sequences: the user is failed, no password is handed off under the
// forged name, and the next run (against an honest server) finds the account by
// logging in with the journaled password and hands it off then.
func TestForgedUserIDIsAFailedUser(t *testing.T) {
	t.Parallel()
	for _, f := range []matrixtest.Fault{
		{ForgeUserID: "@mallory:evil.example"},
		{ForgeNoUserID: true},
		{ForgeUserID: "@user000:example.org\n=cmd|' /C calc'!A0"},
	} {
		t.Run(fmt.Sprintf("%q", f.ForgeUserID), func(t *testing.T) {
			t.Parallel()
			jpath := filepath.Join(t.TempDir(), "journal")
			f1 := setup(t, matrixtest.Options{Faults: matrixtest.FaultN(1, f, isRegisterPOST)}, jpath)
			us := users(1)
			if _, err := f1.run.Run(t.Context(), source(us)); err != nil {
				t.Fatal(err)
			}
			row := f1.rec.rows[0]
			if row.Status != report.Failed || strings.ContainsAny(row.Error, "\n\x1b") {
				t.Errorf("row %+v, want failed with a printable message", row)
			}
			if len(f1.rec.creds) != 0 {
				t.Errorf("a password was handed off under %v", f1.rec.creds)
			}
			f1.jr.Close()

			f2 := setupWith(t, f1.srv, jpath)
			if _, err := f2.run.Run(t.Context(), source(us)); err != nil {
				t.Fatal(err)
			}
			if f2.rec.rows[0].Status != report.Created {
				t.Errorf("next run: %+v, want created (found by logging in)", f2.rec.rows[0])
			}
			f2.assertConverged(t, us)
		})
	}
}

// fullJournal is a journal whose disk fills after a few outcomes.
type fullJournal struct {
	Journal
	left atomic.Int32
}

func (j *fullJournal) Outcome(lp, id string, st journal.Status) error {
	if j.left.Add(-1) < 0 {
		return errors.New("no space left on device")
	}
	return j.Journal.Outcome(lp, id, st)
}

// When the journal's disk fills mid-run the run stops, and its summary still counts
// every account the server created (issue 11: it counted 44 created while 57 existed).
func TestSummaryCountsWhatTheServerDidWhenTheJournalFails(t *testing.T) {
	t.Parallel()
	f := setup(t, matrixtest.Options{}, "")
	fj := &fullJournal{Journal: f.jr}
	fj.left.Store(10)
	f.run.Journal = fj
	sum, err := f.run.Run(t.Context(), source(users(60)))
	if err == nil {
		t.Fatal("the run went on with a full journal")
	}
	// Every account on the server is reported created, or failed with its outcome
	// unknown (its request was in flight when the run stopped): none is left out.
	rows := map[string]report.Row{}
	for _, r := range f.rec.rows {
		rows[r.Localpart] = r
	}
	for _, u := range f.srv.Users() {
		r := rows[u.Localpart]
		if r.Status != report.Created && !(r.Status == report.Failed && strings.Contains(r.Error, "unknown")) {
			t.Errorf("%s exists on the server, but its row is %+v", u.Localpart, r)
		}
	}
	if sum.Total != 60 {
		t.Errorf("the summary has %d users, want all 60 of the roster", sum.Total)
	}
}
