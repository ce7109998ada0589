package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/report"
)

// runMetrics writes --metrics-file when a run ends, whatever the outcome: a run that
// stopped at a roster error must show up in monitoring as much as one with failures.
type runMetrics struct {
	cfg     *config.Config
	started time.Time
	sum     *report.Summary // set once the batch has run
}

func startMetrics(cfg *config.Config) *runMetrics {
	return &runMetrics{cfg: cfg, started: time.Now()}
}

// finish writes the metrics for a run that ended with err, and returns err. A metrics
// file that cannot be written fails an otherwise good run (exit 1): cron monitoring
// that silently stops updating is worse than a failed job.
func (m *runMetrics) finish(err error, stderr io.Writer) error {
	if m == nil || m.cfg.MetricsFile == "" {
		return err
	}
	werr := report.WriteMetrics(m.cfg.MetricsFile, report.Metrics{
		Summary:  m.sum,
		ExitCode: codeOf(err),
		DryRun:   m.cfg.DryRun,
		Started:  m.started,
		Finished: time.Now(),
	})
	if werr == nil {
		return err
	}
	if err == nil {
		return failed(werr, "the users were provisioned; fix the path of --metrics-file (its directory must exist and be writable)")
	}
	fmt.Fprintf(stderr, "provision: %v\n", werr)
	return err
}

// metricsWarning is said when --metrics-file names a file node_exporter's textfile
// collector will not read.
func metricsWarning(cfg *config.Config) string {
	if cfg.MetricsFile == "" || filepath.Ext(cfg.MetricsFile) == ".prom" {
		return ""
	}
	return fmt.Sprintf("--metrics-file %s: node_exporter's textfile collector reads only files ending in .prom", cfg.MetricsFile)
}
