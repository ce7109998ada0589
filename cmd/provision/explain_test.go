package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/pipeline"
)

// Every kind of pipeline error gets its exit code and, but for those whose text says
// it all, its advice, here and nowhere else.
func TestExplainPipelineKinds(t *testing.T) {
	cfg := &config.Config{}
	for _, tc := range []struct {
		kind error
		code int
	}{
		{pipeline.ErrInvalid, ExitUsage},
		{pipeline.ErrRosterUnreadable, ExitUsage},
		{pipeline.ErrNoRecipient, ExitUsage},
		{pipeline.ErrSameFile, ExitUsage},
		{pipeline.ErrNotWritable, ExitUsage},
		{pipeline.ErrStateDir, ExitUsage},
		{pipeline.ErrHandoffDir, ExitUsage},
		{pipeline.ErrUnreachable, ExitFailed},
		{pipeline.ErrNoServerName, ExitUsage},
		{pipeline.ErrJournalKeyDamaged, ExitUsage},
		{pipeline.ErrRosterCount, ExitUsage},
		{pipeline.ErrUserIDTooLong, ExitUsage},
		{pipeline.ErrResetWithMAS, ExitUsage},
		{pipeline.ErrRoomsNeedAdmin, ExitUsage},
		{pipeline.ErrMASClient, ExitUsage},
		{pipeline.ErrMASUnreachable, ExitFailed},
		{pipeline.ErrMASServerName, ExitUsage},
		{pipeline.ErrMASPasswords, ExitUsage},
		{pipeline.ErrNoJournal, ExitUsage},
		{pipeline.ErrManyJournals, ExitUsage},
	} {
		err := explain(cfg, &pipeline.Error{Kind: tc.kind, Err: errors.New("what failed")})
		if got := codeOf(err); got != tc.code {
			t.Errorf("%v: exit %d, want %d", tc.kind, got, tc.code)
		}
		hinted := strings.Contains(err.Error(), "\n  hint: ")
		if want := tc.kind != pipeline.ErrInvalid; hinted != want {
			t.Errorf("%v: hint given %v, want %v: %q", tc.kind, hinted, want, err)
		}
	}
	for k := pipeline.StopTimeout; k <= pipeline.StopJoins; k++ {
		err := explain(cfg, &pipeline.StopError{Kind: k, Err: errors.New("stopped")})
		if codeOf(err) != ExitFailed {
			t.Errorf("stop kind %d: exit %d, want %d", k, codeOf(err), ExitFailed)
		}
		if hinted := strings.Contains(err.Error(), "\n  hint: "); hinted != (k != pipeline.StopFinish) {
			t.Errorf("stop kind %d: hint given %v: %q", k, hinted, err)
		}
	}
}
