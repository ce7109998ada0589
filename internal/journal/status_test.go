package journal

import (
	"testing"

	"github.com/provision-matrix/provision/internal/report"
)

// The batch package converts the report's statuses to the journal's as they are
// (journal.Status(report.Created)): the strings must stay the same, since the file
// stores them.
func TestStatusesAreTheReportsStrings(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		journal Status
		report  report.Status
	}{
		{StatusCreated, report.Created},
		{StatusExists, report.Exists},
		{StatusFailed, report.Failed},
	} {
		if c.journal != Status(c.report) {
			t.Errorf("journal status %q is not the report's %q", c.journal, c.report)
		}
	}
}
