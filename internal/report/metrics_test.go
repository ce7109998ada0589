package report

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	t0 = time.Date(2025, 1, 14, 3, 0, 0, 0, time.UTC)
	t1 = t0.Add(3500 * time.Millisecond)
)

func summaryOf(counts map[Status]int) *Summary {
	s := NewSummary(t0)
	for st, n := range counts {
		for range n {
			s.Add(Row{Status: st, Attempts: 1})
		}
	}
	s.Finished = t1
	return s
}

func readMetrics(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkExposition(t, string(data))
	samples := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, _ := strings.Cut(line, " ")
		samples[name] = val
	}
	return samples
}

// checkExposition checks the Prometheus text format as node_exporter parses it:
// every sample is "name{labels} value", and each metric has HELP and TYPE lines before
// its samples.
func checkExposition(t *testing.T, s string) {
	t.Helper()
	sample := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"\})? (-?[0-9]+(\.[0-9]+)?)$`)
	typed := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(name)
			if len(f) != 2 || f[1] != "gauge" {
				t.Errorf("line %d: %q", i+1, line)
			}
			typed[f[0]] = true
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := sample.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("line %d is not a sample: %q", i+1, line)
			continue
		}
		if !typed[m[1]] {
			t.Errorf("line %d: %s has no TYPE line before it", i+1, m[1])
		}
	}
	if !strings.HasSuffix(s, "\n") {
		t.Error("the file does not end with a newline")
	}
}

func TestWriteMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "provision.prom")

	// A clean run.
	err := WriteMetrics(path, Metrics{Summary: summaryOf(map[Status]int{Created: 18, Exists: 2}), ExitCode: 0, Started: t0, Finished: t1})
	if err != nil {
		t.Fatal(err)
	}
	got := readMetrics(t, path)
	want := map[string]string{
		`provision_last_run_users{status="created"}`:   "18",
		`provision_last_run_users{status="exists"}`:    "2",
		`provision_last_run_users{status="failed"}`:    "0",
		`provision_last_run_users{status="skipped"}`:   "0",
		"provision_last_run_duration_seconds":          "3.5",
		"provision_last_run_timestamp_seconds":         "1736823603.5",
		"provision_last_run_exit_code":                 "0",
		"provision_last_run_success":                   "1",
		"provision_last_run_dry_run":                   "0",
		"provision_last_success_timestamp_seconds":     "1736823603.5",
		`provision_last_run_users{status="updated"}`:   "0",
		`provision_last_run_users{status="unchanged"}`: "0",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 so that node_exporter can read it", st.Mode().Perm())
	}

	// A run with failures a day later keeps the time of the last success.
	later := t1.Add(24 * time.Hour)
	err = WriteMetrics(path, Metrics{Summary: summaryOf(map[Status]int{Exists: 19, Failed: 1}), ExitCode: 1, Started: later.Add(-time.Second), Finished: later})
	if err != nil {
		t.Fatal(err)
	}
	got = readMetrics(t, path)
	for k, v := range map[string]string{
		`provision_last_run_users{status="failed"}`: "1",
		"provision_last_run_exit_code":              "1",
		"provision_last_run_success":                "0",
		"provision_last_run_timestamp_seconds":      "1736910003.5",
		"provision_last_success_timestamp_seconds":  "1736823603.5",
	} {
		if got[k] != v {
			t.Errorf("after a failed run: %s = %q, want %q", k, got[k], v)
		}
	}

	// A roster error: no summary, all counts 0, still the last success.
	err = WriteMetrics(path, Metrics{ExitCode: 2, Started: later, Finished: later})
	if err != nil {
		t.Fatal(err)
	}
	got = readMetrics(t, path)
	if got[`provision_last_run_users{status="created"}`] != "0" || got["provision_last_run_exit_code"] != "2" ||
		got["provision_last_success_timestamp_seconds"] != "1736823603.5" {
		t.Errorf("after a roster error: %v", got)
	}

	// A successful dry run is not a success of the sync.
	err = WriteMetrics(path, Metrics{Summary: summaryOf(map[Status]int{Skipped: 20}), DryRun: true, Started: later, Finished: later})
	if err != nil {
		t.Fatal(err)
	}
	got = readMetrics(t, path)
	if got["provision_last_run_success"] != "0" || got["provision_last_run_dry_run"] != "1" ||
		got["provision_last_success_timestamp_seconds"] != "1736823603.5" {
		t.Errorf("after a dry run: %v", got)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}

func TestWriteMetricsFirstRunFails(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "provision.prom")
	if err := WriteMetrics(path, Metrics{ExitCode: 1, Started: t0, Finished: t1}); err != nil {
		t.Fatal(err)
	}
	if got := readMetrics(t, path)["provision_last_success_timestamp_seconds"]; got != "0" {
		t.Errorf("last success = %s, want 0 (never)", got)
	}
}

func TestWriteMetricsNoDirectory(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "missing", "provision.prom")
	err := WriteMetrics(path, Metrics{Started: t0, Finished: t1})
	if err == nil || !strings.Contains(err.Error(), "does not exist; create it first") {
		t.Fatalf("got %v", err)
	}
}

func TestReadGauge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want float64
	}{
		{"provision_last_success_timestamp_seconds 12.5\n", 12.5},
		{"# HELP provision_last_success_timestamp_seconds x\nprovision_last_success_timestamp_seconds 7 1700000000000\n", 7},
		{"provision_last_success_timestamp_seconds_other 3\n", 0},
		{"provision_last_success_timestamp_seconds abc\n", 0},
		{"provision_last_success_timestamp_seconds -1\n", 0},
		{"", 0},
	}
	for _, tc := range tests {
		if got := readGauge([]byte(tc.in), lastSuccessMetric); got != tc.want {
			t.Errorf("readGauge(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
