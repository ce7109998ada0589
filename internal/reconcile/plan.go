package reconcile

import (
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/roster"
	"github.com/provision-matrix/provision/internal/sanitize"

	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// Plan is every change of a run: the roster's users in roster order, then the
// accounts the roster no longer names, ordered by user ID.
type Plan struct {
	Changes []Change
	Options Options
	// Quiet, when set, holds the roster users that Changes leaves out because nothing
	// happens to them (see IsQuiet): a plan of a large roster keeps only what acts,
	// and replays the roster for the rest. nil: Changes holds every roster user.
	Quiet *QuietRows
}

// QuietRows are the roster users a plan leaves out of its Changes, by position in
// the roster: one bit each, instead of a Change of some 400 bytes.
type QuietRows struct {
	// Roster streams the roster again, in the order the plan read it.
	Roster func(yield func(roster.User) error) error
	bits   []uint64
	count  int
}

// Mark records that the roster user at position i is quiet.
func (q *QuietRows) Mark(i int) {
	for len(q.bits) <= i/64 {
		q.bits = append(q.bits, 0)
	}
	if q.bits[i/64]&(1<<(i%64)) == 0 {
		q.bits[i/64] |= 1 << (i % 64)
		q.count++
	}
}

// Is reports whether the roster user at position i is quiet.
func (q *QuietRows) Is(i int) bool { return i/64 < len(q.bits) && q.bits[i/64]&(1<<(i%64)) != 0 }

// Len is the number of quiet roster users.
func (q *QuietRows) Len() int { return q.count }

// IsQuiet reports whether c is a roster user's change that only reports the account
// as it is (unchanged, or existing and not compared), with nothing to say: exactly
// QuietChange(c.Action, c.UserID, c.User).
func IsQuiet(c Change) bool {
	return (c.Action == Unchanged || c.Action == Exists) && c.Note == "" && len(c.Fields) == 0 &&
		c.Put == (matrix.PutUser{}) && len(c.Joins) == 0 && len(c.Leaves) == 0 && len(c.LeaveIDs) == 0 &&
		!c.ResetPassword && !c.LogoutDevices && !c.Erase
}

// QuietAction is the action of the plan's quiet users: Unchanged when --update
// compared them, else Exists.
func (p *Plan) QuietAction() Action {
	if p.Options.Update {
		return Unchanged
	}
	return Exists
}

// QuietChange is the change of a quiet roster user, as Diff made it.
func (p *Plan) QuietChange(userID string, u roster.User) Change {
	return Change{Action: p.QuietAction(), UserID: userID, User: u}
}

// Len is the number of the plan's changes, quiet ones included: one report row each.
func (p *Plan) Len() int {
	if p.Quiet == nil {
		return len(p.Changes)
	}
	return len(p.Changes) + p.Quiet.Len()
}

// Counts are a plan's changes by action.
type Counts map[Action]int

// Counts counts the plan's changes.
func (p *Plan) Counts() Counts {
	c := Counts{}
	for _, ch := range p.Changes {
		c[ch.Action]++
	}
	if p.Quiet != nil && p.Quiet.Len() > 0 {
		c[p.QuietAction()] += p.Quiet.Len()
	}
	return c
}

// LimitError: the plan would deactivate more accounts than Options.MaxDeactivate
// allows. Nothing has been changed when a caller gets it from CheckLimit.
type LimitError struct {
	Count, Max int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%d accounts would be deactivated, more than the limit of %d", e.Count, e.Max)
}

// CheckLimit returns a *LimitError when the plan deactivates more accounts than
// allowed. The limit guards against a roster that came out truncated or empty (a
// failed export, the wrong file), which would otherwise deactivate everyone.
func (p *Plan) CheckLimit() error {
	n := p.Counts()[Deactivate]
	if p.Options.MaxDeactivate >= 0 && n > p.Options.MaxDeactivate {
		return &LimitError{Count: n, Max: p.Options.MaxDeactivate}
	}
	return nil
}

// Lines renders the plan as a diff, one line per change: "+" creates, "~" changes an
// existing account, "-" deactivates, "!" is provision deliberately leaving an account
// alone. Accounts that stay as they are get no line.
func (p *Plan) Lines() []string {
	var out []string
	add := func(sign, id, format string, args ...any) {
		out = append(out, sign+" "+id+"  "+fmt.Sprintf(format, args...))
	}
	for _, c := range p.Changes {
		id := c.UserID
		switch c.Action {
		case Create:
			var attrs []string
			if c.User.Admin {
				attrs = append(attrs, "server admin")
			}
			if c.User.UserType != "" {
				attrs = append(attrs, safe(c.User.UserType))
			}
			if len(attrs) > 0 {
				add("+", id, "create (%s)", strings.Join(attrs, ", "))
			} else {
				add("+", id, "create")
			}
			for _, r := range c.Joins {
				add("+", id, "join %s", safe(r))
			}
		case Update:
			for _, f := range c.Fields {
				if f.Name == "admin" {
					add("~", id, "admin %s -> %s", f.Old, f.New)
				} else {
					add("~", id, "%s %s -> %s", f.Name, strconv.Quote(f.Old), strconv.Quote(f.New))
				}
			}
			for _, r := range c.Joins {
				add("~", id, "join %s", safe(r))
			}
			for _, r := range c.Leaves {
				add("~", id, "leave %s", safe(r))
			}
			if c.ResetPassword {
				if c.LogoutDevices {
					add("~", id, "password reset (logs out every device)")
				} else {
					add("~", id, "password reset (devices stay logged in)")
				}
			}
		case Deactivate:
			if c.Erase {
				add("-", id, "deactivate and erase")
			} else {
				add("-", id, "deactivate")
			}
		case Skip, Keep:
			add("!", id, "%s: %s", c.Action, c.Note)
		}
		if c.Action == Update && c.Note != "" {
			add("!", id, "%s", c.Note)
		}
	}
	return out
}

// Summary is the plan's counts on one line, e.g.
// "3 to create, 5 to update, 4 to deactivate, 18 unchanged".
func (p *Plan) Summary() string {
	n := p.Counts()
	parts := []string{
		fmt.Sprintf("%d to create", n[Create]),
		fmt.Sprintf("%d to update", n[Update]),
		fmt.Sprintf("%d to deactivate", n[Deactivate]),
	}
	if n[Unchanged] > 0 || p.Options.Update {
		parts = append(parts, fmt.Sprintf("%d unchanged", n[Unchanged]))
	}
	if n[Exists] > 0 {
		parts = append(parts, fmt.Sprintf("%d existing not compared (pass --update to compare them)", n[Exists]))
	}
	if n[Skip] > 0 {
		parts = append(parts, fmt.Sprintf("%d skipped", n[Skip]))
	}
	if n[Keep] > 0 {
		parts = append(parts, fmt.Sprintf("%d kept", n[Keep]))
	}
	return strings.Join(parts, ", ")
}

// WriteText writes the lines, a blank line and the summary.
func (p *Plan) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	lines := p.Lines()
	for _, l := range lines {
		bw.WriteString(l)
		bw.WriteByte('\n')
	}
	if len(lines) > 0 {
		bw.WriteByte('\n')
	}
	bw.WriteString(p.Summary())
	bw.WriteByte('\n')
	return bw.Flush()
}

// safe leaves a plain token as it is and quotes anything with spaces or control
// characters, so that a hostile roster cannot drive the operator's terminal.
func safe(s string) string {
	if sanitize.Printable(s) && !strings.ContainsFunc(s, unicode.IsSpace) {
		return s
	}
	return strconv.Quote(s)
}
