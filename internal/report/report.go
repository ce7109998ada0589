// Package report writes the results of a run: one row per roster user, as CSV or JSON,
// and a summary of counts. A report never holds a secret: rows carry statuses and the
// server's error codes, never passwords, and callers scrub server messages before they
// get here.
package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Status is what happened to one user.
type Status string

// The statuses. Their spelling is part of the report format: scripts match on them.
const (
	Created     Status = "created"     // the account was created by this run (or by an interrupted run this one resumed)
	Exists      Status = "exists"      // the account was there already; nothing was changed
	Failed      Status = "failed"      // the server refused, or gave up after retries; see errcode and error
	Skipped     Status = "skipped"     // nothing was sent: a dry run, or the run was interrupted first
	Updated     Status = "updated"     // an existing account was changed to match the roster
	Unchanged   Status = "unchanged"   // an existing account already matched the roster
	Deactivated Status = "deactivated" // an account provision created is gone from the roster and was deactivated
)

// Header is the CSV header and the JSON keys, in order.
var Header = []string{"localpart", "user_id", "status", "errcode", "error", "attempts"}

// Row is one user's result.
type Row struct {
	Localpart string `json:"localpart"`
	UserID    string `json:"user_id"`
	Status    Status `json:"status"`
	Errcode   string `json:"errcode"`
	// Error is the server's message for a failed user, or a note for another status
	// (for example that the localpart was lowercased).
	Error    string `json:"error"`
	Attempts int    `json:"attempts"`
}

// Writer writes rows in one format.
type Writer interface {
	Write(Row) error
	// Close finishes the document (the closing bracket of a JSON array) and flushes.
	// It does not close the underlying io.Writer.
	Close() error
}

// Format is a report format.
type Format string

const (
	CSV  Format = "csv"
	JSON Format = "json"
)

// FormatFor picks the format from a file name; "-" (standard output) is CSV.
func FormatFor(name string) (Format, error) {
	if name == "-" || name == "" {
		return CSV, nil
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return CSV, nil
	case ".json":
		return JSON, nil
	}
	return "", fmt.Errorf("report %s: name it .csv or .json so the format is clear", name)
}

// New returns a Writer of format f on w.
func New(w io.Writer, f Format) (Writer, error) {
	switch f {
	case CSV:
		return newCSV(w), nil
	case JSON:
		return &jsonWriter{w: bufio.NewWriter(w)}, nil
	}
	return nil, fmt.Errorf("unknown report format %q", f)
}

type csvWriter struct {
	cw          *csv.Writer
	wroteHeader bool
	rec         []string
}

func newCSV(w io.Writer) *csvWriter {
	return &csvWriter{cw: csv.NewWriter(w), rec: make([]string, len(Header))}
}

func (c *csvWriter) Write(r Row) error {
	if !c.wroteHeader {
		c.wroteHeader = true
		if err := c.cw.Write(Header); err != nil {
			return err
		}
	}
	c.rec[0] = EscapeCell(r.Localpart)
	// A user ID is "@" + a validated localpart (a-z 0-9 . _ = - / +) + ":" + server
	// name: it cannot hold a formula, and scripts join on it, so it is left as it is.
	c.rec[1] = r.UserID
	c.rec[2] = string(r.Status)
	c.rec[3] = EscapeCell(r.Errcode)
	c.rec[4] = EscapeCell(r.Error)
	c.rec[5] = strconv.Itoa(r.Attempts)
	return c.cw.Write(c.rec)
}

func (c *csvWriter) Close() error {
	if !c.wroteHeader {
		c.wroteHeader = true
		if err := c.cw.Write(Header); err != nil {
			return err
		}
	}
	c.cw.Flush()
	return c.cw.Error()
}

// EscapeCell defuses a CSV cell that a spreadsheet would run as a formula
// (CWE-1236): one starting with = + - @, a tab or a carriage return gets a leading
// apostrophe, which spreadsheets show as text and do not evaluate.
func EscapeCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

type jsonWriter struct {
	w     *bufio.Writer
	n     int
	buf   []byte
	ended bool
}

func (j *jsonWriter) Write(r Row) error {
	sep := ",\n"
	if j.n == 0 {
		sep = "[\n"
	}
	j.n++
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	j.buf = append(append(append(j.buf[:0], sep...), "  "...), b...)
	_, err = j.w.Write(j.buf)
	return err
}

func (j *jsonWriter) Close() error {
	if j.ended {
		return j.w.Flush()
	}
	j.ended = true
	end := "\n]\n"
	if j.n == 0 {
		end = "[]\n"
	}
	if _, err := j.w.WriteString(end); err != nil {
		return err
	}
	return j.w.Flush()
}

// Summary counts what a run did.
type Summary struct {
	Counts   map[Status]int
	Total    int
	Started  time.Time
	Finished time.Time
	// Requests is the number of state-changing requests sent (attempts), for the rate.
	Requests int
}

// NewSummary returns an empty summary that started at t.
func NewSummary(t time.Time) *Summary {
	return &Summary{Counts: map[Status]int{}, Started: t}
}

// Add counts a row.
func (s *Summary) Add(r Row) {
	s.Counts[r.Status]++
	s.Total++
	s.Requests += r.Attempts
}

// Duration is how long the run took.
func (s *Summary) Duration() time.Duration { return s.Finished.Sub(s.Started) }

// order is the order statuses are listed in.
var order = []Status{Created, Updated, Unchanged, Exists, Deactivated, Skipped, Failed}

// String renders the counts on one line, e.g. "20 users: 18 created, 2 exists in 3.1s (6.4 users/s)".
func (s *Summary) String() string {
	var parts []string
	seen := map[Status]bool{}
	for _, st := range order {
		seen[st] = true
		if n := s.Counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	var extra []string
	for st, n := range s.Counts {
		if !seen[st] && n > 0 {
			extra = append(extra, fmt.Sprintf("%d %s", n, st))
		}
	}
	sort.Strings(extra)
	parts = append(parts, extra...)
	if len(parts) == 0 {
		parts = []string{"nothing to do"}
	}
	d := s.Duration().Round(time.Millisecond)
	line := fmt.Sprintf("%d users: %s in %s", s.Total, strings.Join(parts, ", "), d)
	// A rate over a few milliseconds (a re-run with nothing to do) means nothing.
	if secs := s.Duration().Seconds(); secs >= 0.1 && s.Total > 0 {
		line += fmt.Sprintf(" (%.1f users/s)", float64(s.Total)/secs)
	}
	return line
}
