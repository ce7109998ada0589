package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/pipeline"
	"github.com/provision-matrix/provision/internal/report"
)

// runProvision is a run of the pipeline (internal/pipeline) with the terminal UI, the
// metrics file and the exit code: everything about it that is the CLI's.
func runProvision(ctx context.Context, cfg *config.Config, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	limitMemory()
	metrics := startMetrics(cfg)
	secrets := secretsOf(cfg)
	defer func() { err = redacted(metrics.finish(explain(cfg, err), stderr), secrets) }()
	ui := newUI(uiOptionsOf(cfg), stderr, secrets)
	defer ui.close()
	for _, w := range cfg.Warnings {
		ui.log.Warn(w)
	}
	if w := metricsWarning(cfg); w != "" {
		ui.log.Warn(w)
	}
	res, err := pipeline.Run(ctx, cfg, observer{ui, cfg}, stdin, stdout)
	metrics.sum = res.Summary
	switch {
	case err != nil:
		return err
	case res.Interrupted:
		return &silentError{code: ExitInterrupted}
	case res.FailedUsers > 0:
		return &silentError{code: ExitFailed} // the summary lists them
	}
	return nil
}

// observer is the terminal UI as the pipeline sees it.
type observer struct {
	ui  *ui
	cfg *config.Config
}

var _ pipeline.Observer = observer{}

func (o observer) Log() *slog.Logger                     { return o.ui.log }
func (o observer) Info(msg string)                       { o.ui.info(msg) }
func (o observer) Start(total int)                       { o.ui.start(total) }
func (o observer) Row(r report.Row)                      { o.ui.row(r) }
func (o observer) Stop()                                 { o.ui.stop() }
func (o observer) CredentialsWritten(n int, path string) { o.ui.credentialsWritten(n, path) }
func (o observer) Summary(s *report.Summary)             { o.ui.summary(s) }

// WouldStop warns, on a dry run, of what would stop the real run: with its advice.
func (o observer) WouldStop(err error) {
	o.ui.info("WARNING: run for real, this would stop before changing anything: " + explain(o.cfg, err).Error())
}
