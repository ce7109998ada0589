package report

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/provision-matrix/provision/internal/sanitize"
)

// StatusMeaning explains each status in the summary table.
var StatusMeaning = map[Status]string{
	Created:     "new accounts; their passwords are in the handoff",
	Exists:      "already on the server; not touched",
	Updated:     "existing accounts changed to match the roster",
	Unchanged:   "already matching the roster",
	Deactivated: "gone from the roster; deactivated",
	Skipped:     "nothing sent (a dry run, or interrupted first)",
	Failed:      "see below and the report",
}

// Statuses lists the statuses s counted, in the order a reader expects: the known
// ones, then any other, sorted.
func (s *Summary) Statuses() []Status {
	var out []Status
	for _, st := range order {
		if s.Counts[st] > 0 {
			out = append(out, st)
		}
	}
	var extra []Status
	for st, n := range s.Counts {
		if n > 0 && !slices.Contains(order, st) {
			extra = append(extra, st)
		}
	}
	slices.Sort(extra)
	return append(out, extra...)
}

// SummaryOptions is what a summary shows beyond the counts.
type SummaryOptions struct {
	DryRun bool
	// Failed is how many users failed; Failures are the first of them, the ones
	// listed (the report has every one).
	Failed   int
	Failures []Row
	// Hint says what to do about a failed user; "" for nothing. Nil: no hints.
	Hint func(Row) string
}

func (o SummaryOptions) hint(r Row) string {
	if o.Hint == nil {
		return ""
	}
	return o.Hint(r)
}

// WriteSummaryText writes the summary a person reads at the end of a run: a table of
// counts per status with what each means, then every listed failed user with the
// server's errcode, its message (made safe to print) and the hint.
func WriteSummaryText(w io.Writer, s *Summary, o SummaryOptions) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	title := fmt.Sprintf("%d user%s", s.Total, plural(s.Total))
	if o.DryRun {
		title = "dry run, nothing was changed: " + title
	}
	took := s.Duration().Round(time.Millisecond)
	if secs := s.Duration().Seconds(); secs >= 0.5 && s.Total > 0 {
		fmt.Fprintf(&b, "\n%s in %s (%.1f users/s):\n", title, took, float64(s.Total)/secs)
	} else {
		fmt.Fprintf(&b, "\n%s in %s:\n", title, took)
	}
	for _, st := range s.Statuses() {
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", st, s.Counts[st], StatusMeaning[st])
	}
	tw.Flush()

	if o.Failed > 0 {
		fmt.Fprintf(&b, "\n%d user%s failed:\n", o.Failed, plural(o.Failed))
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  USER\tERRCODE\tMESSAGE")
		for _, r := range o.Failures {
			who := r.UserID
			if who == "" {
				who = r.Localpart
			}
			code := r.Errcode
			if code == "" {
				code = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", sanitize.Visible(who, 80), sanitize.Visible(code, 40), sanitize.Visible(r.Error, 300))
			if h := o.hint(r); h != "" {
				fmt.Fprintf(tw, "  \t\thint: %s\n", h)
			}
		}
		tw.Flush()
		if more := o.Failed - len(o.Failures); more > 0 {
			fmt.Fprintf(&b, "  ... and %d more: see the report\n", more)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// FailedUser is a failed user in the JSON summary.
type FailedUser struct {
	User    string `json:"user"`
	UserID  string `json:"user_id,omitempty"`
	Errcode string `json:"errcode"`
	Error   string `json:"error"`
	Hint    string `json:"hint,omitempty"`
}

// SummaryAttrs are the fields of the summary as a log record (--log-format json):
// users, counts, dry_run, seconds and, when some users failed, failed and
// failed_not_listed. JSON escapes what WriteSummaryText makes safe, so the server's
// text goes in whole.
func SummaryAttrs(s *Summary, o SummaryOptions) []any {
	counts := []any{}
	for _, st := range s.Statuses() {
		counts = append(counts, slog.Int(string(st), s.Counts[st]))
	}
	attrs := []any{
		"users", s.Total,
		slog.Group("counts", counts...),
		"dry_run", o.DryRun,
		"seconds", s.Duration().Seconds(),
	}
	if o.Failed > 0 {
		failed := make([]FailedUser, 0, len(o.Failures))
		for _, r := range o.Failures {
			failed = append(failed, FailedUser{User: r.Localpart, UserID: r.UserID, Errcode: r.Errcode, Error: r.Error, Hint: o.hint(r)})
		}
		attrs = append(attrs, "failed", failed)
		if more := o.Failed - len(o.Failures); more > 0 {
			attrs = append(attrs, "failed_not_listed", more) // the report has every one
		}
	}
	return attrs
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
