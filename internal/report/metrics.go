package report

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/provision-matrix/provision/internal/safefile"
)

// Metrics describe a finished run for monitoring: provision run from cron writes
// them in the Prometheus text format for node_exporter's textfile collector, so that
// an alert can fire when the sync stops succeeding.
type Metrics struct {
	// Summary counts the users by status; nil when the run stopped before
	// provisioning anyone (a roster or configuration error), and then every count
	// is 0.
	Summary *Summary
	// ExitCode is the process's exit code (0, 1, 2, 3 or 130).
	ExitCode int
	// DryRun marks a run that changed nothing; it never counts as a success.
	DryRun bool
	// Started and Finished bound the run.
	Started, Finished time.Time
}

// Success tells whether the run did its whole job: exit code 0 and not a dry run.
func (m Metrics) Success() bool { return m.ExitCode == 0 && !m.DryRun }

// lastSuccessMetric carries over from one file to the next: a failed run must not
// erase when the last good one was.
const lastSuccessMetric = "provision_last_success_timestamp_seconds"

// WriteMetrics writes m to path, replacing the file atomically: a collector that reads
// it at any moment sees the previous run's metrics or this run's, never half of them.
// When this run did not succeed, the time of the last success is read from the file
// being replaced.
//
// Unlike the secret files, which internal/safefile creates 0600, this file is made
// 0644: it holds no secret, and node_exporter runs as a user of its own that must be
// able to read it.
func WriteMetrics(path string, m Metrics) error {
	lastSuccess := 0.0
	if m.Success() {
		lastSuccess = unixSeconds(m.Finished)
	} else if prev, err := os.ReadFile(path); err == nil {
		lastSuccess = readGauge(prev, lastSuccessMetric)
	}
	var b bytes.Buffer
	m.format(&b, lastSuccess)
	// safefile's temporary name does not end in .prom, so the collector skips it.
	if err := safefile.WriteFileMode(path, b.Bytes(), true, 0o644); err != nil {
		return fmt.Errorf("metrics file: %w", err)
	}
	return nil
}

// format writes the metrics in the Prometheus text exposition format (version 0.0.4).
func (m Metrics) format(b *bytes.Buffer, lastSuccess float64) {
	gauge := func(name, help string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
	}
	gauge("provision_last_run_users", "Users of the roster by what the last run did with them (created, exists, failed, ...).")
	counts := map[Status]int{}
	if m.Summary != nil {
		counts = m.Summary.Counts
	}
	// Every status is written, zeros included, so that an alert on failed > 0 has
	// a series to look at after a clean run too.
	statuses := append([]Status(nil), order...)
	var extra []Status
	for st := range counts {
		if !containsStatus(order, st) {
			extra = append(extra, st)
		}
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i] < extra[j] })
	for _, st := range append(statuses, extra...) {
		fmt.Fprintf(b, "provision_last_run_users{status=%q} %d\n", string(st), counts[st])
	}
	gauge("provision_last_run_duration_seconds", "How long the last run took.")
	fmt.Fprintf(b, "provision_last_run_duration_seconds %s\n", formatFloat(m.Finished.Sub(m.Started).Seconds()))
	gauge("provision_last_run_timestamp_seconds", "When the last run finished, in seconds since the Unix epoch.")
	fmt.Fprintf(b, "provision_last_run_timestamp_seconds %s\n", formatFloat(unixSeconds(m.Finished)))
	gauge("provision_last_run_exit_code", "Exit code of the last run: 0 all done, 1 some users failed, 2 usage or roster error, 3 locked, 130 interrupted.")
	fmt.Fprintf(b, "provision_last_run_exit_code %d\n", m.ExitCode)
	gauge("provision_last_run_dry_run", "1 if the last run was a dry run (it changed nothing).")
	fmt.Fprintf(b, "provision_last_run_dry_run %d\n", boolInt(m.DryRun))
	gauge("provision_last_run_success", "1 if the last run created or found every user (exit code 0, not a dry run).")
	fmt.Fprintf(b, "provision_last_run_success %d\n", boolInt(m.Success()))
	gauge(lastSuccessMetric, "When a run last succeeded, in seconds since the Unix epoch; 0 if none is known.")
	fmt.Fprintf(b, "%s %s\n", lastSuccessMetric, formatFloat(lastSuccess))
}

func containsStatus(list []Status, s Status) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixMilli()) / 1000
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// readGauge finds an unlabelled sample in a metrics file; 0 when it is not there
// or unreadable (the file may have been edited, or written by another version).
func readGauge(data []byte, name string) float64 {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name+" ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.Fields(rest + " x")[0], 64)
		if err != nil || f < 0 {
			return 0
		}
		return f
	}
	return 0
}
