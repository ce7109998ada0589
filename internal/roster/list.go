package roster

import (
	"encoding/csv"
	"io"
	"strconv"

	"github.com/provision-matrix/provision/internal/report"
)

// ListHeader is the header of a roster's listing (provision check --list).
var ListHeader = []string{"line", "localpart", "displayname", "email", "admin", "note"}

// ListWriter writes users as CSV, one line each, as they were read: what a roster or
// an export becomes, to review before a run. Cells a spreadsheet would run as a
// formula are defused (report.EscapeCell).
type ListWriter struct{ w *csv.Writer }

// NewListWriter starts a listing on w with its header.
func NewListWriter(w io.Writer) *ListWriter {
	l := &ListWriter{w: csv.NewWriter(w)}
	_ = l.w.Write(ListHeader) // an error is kept: Flush returns it
	return l
}

// Write lists u.
func (l *ListWriter) Write(u User) error {
	note := ""
	if u.Original != "" {
		note = "from " + u.Original
	}
	return l.w.Write([]string{strconv.Itoa(u.Line), u.Localpart, report.EscapeCell(u.DisplayName),
		report.EscapeCell(u.Email), strconv.FormatBool(u.Admin), report.EscapeCell(note)})
}

// Flush writes what is buffered, and returns the first error of the listing.
func (l *ListWriter) Flush() error {
	l.w.Flush()
	return l.w.Error()
}
