package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/redact"
	"github.com/provision-matrix/provision/internal/report"
)

// ui is everything the operator sees on stderr: log lines, the progress bar on a
// terminal, and the summary. Every byte goes through the redacting writer, so a secret
// that slipped into a message still never reaches the screen or a log file.
//
// With --log-format json every line is one JSON object, for journald, Loki or a log
// shipper: the notices and the summary are log records too (the summary is the
// "summary" record), and there is no progress bar, only "progress" records.
type ui struct {
	out   *redact.Writer // stderr, with secrets blanked out
	raw   io.Writer      // stderr as it is, for the progress bar's escape codes
	log   *slog.Logger
	quiet bool
	tty   bool
	json  bool

	opts        uiOptions
	credentials string // the credentials file, once written: for the JSON summary

	mu       sync.Mutex
	progress *mpb.Progress
	bar      *mpb.Bar
	failed   atomic.Int64
	done     atomic.Int64
	ticker   *time.Ticker  // plain progress lines when stderr is not a terminal
	tickDone chan struct{} // closed when the progress lines stop
	failures []report.Row  // kept for the summary; bounded
	nfailed  int
}

const maxListedFailures = 50

// uiOptions is what the terminal UI needs of the configuration.
type uiOptions struct {
	Quiet               bool
	LogLevel, LogFormat string
	DryRun              bool
	Plaintext           bool   // the credentials file is not encrypted
	Report              string // where the report goes ("-": standard output)
}

func uiOptionsOf(cfg *config.Config) uiOptions {
	return uiOptions{Quiet: cfg.Quiet, LogLevel: cfg.LogLevel, LogFormat: cfg.LogFormat,
		DryRun: cfg.DryRun, Plaintext: cfg.Plaintext, Report: cfg.Report}
}

func newUI(cfg uiOptions, stderr io.Writer, secrets *redact.Set) *ui {
	u := &ui{quiet: cfg.Quiet, json: cfg.LogFormat == "json", opts: cfg}
	if f, ok := stderr.(*os.File); ok && !u.json && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		u.tty = true
	}
	u.out = redact.NewWriter(stderr, secrets)
	u.raw = stderr
	// debug, info, warn or error (config checks it); info if unset.
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	if cfg.Quiet && level < slog.LevelWarn {
		level = slog.LevelWarn
	}
	// Log lines go through the same writer as the bar, so they print above it.
	w := writerFunc(func(b []byte) (int, error) { return u.write(b) })
	var h slog.Handler
	opts := &slog.HandlerOptions{Level: level}
	if u.json {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	u.log = slog.New(redact.NewHandler(h, secrets))
	return u
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func (u *ui) write(b []byte) (int, error) {
	u.mu.Lock()
	p := u.progress
	u.mu.Unlock()
	if p != nil {
		// Above the bar. Log records are redacted by the slog handler already.
		if n, err := p.Write(b); err == nil {
			return n, nil
		}
	}
	return u.out.Write(b)
}

// info says msg on a line of its own; in JSON, as the message of a record, at the
// level a "WARNING: " prefix asks for.
func (u *ui) info(msg string) {
	if u.quiet {
		return
	}
	if u.json {
		if rest, ok := strings.CutPrefix(msg, "WARNING: "); ok {
			u.log.Warn(strings.TrimSpace(rest))
		} else {
			u.log.Info(strings.TrimSpace(msg))
		}
		return
	}
	fmt.Fprintln(u.out, msg)
}

// progressEvery is how often a run that is not on a terminal logs how far it got.
const progressEvery = 30 * time.Second

// start shows a progress bar on a terminal. Elsewhere (cron, CI, a pipe) nothing is
// drawn, so no escape codes end up in a log file: a plain log line says how far the
// run got every half minute instead.
func (u *ui) start(total int) {
	if u.quiet {
		return
	}
	if !u.tty {
		u.ticker = time.NewTicker(progressEvery)
		u.tickDone = make(chan struct{})
		go func(t *time.Ticker, done chan struct{}) {
			for {
				select {
				case <-t.C:
					u.log.Info("progress", "done", u.done.Load(), "total", total, "failed", u.failed.Load())
				case <-done:
					return
				}
			}
		}(u.ticker, u.tickDone)
		return
	}
	name := "provisioning"
	if u.opts.DryRun {
		name = "checking"
	}
	p := mpb.New(mpb.WithOutput(u.raw), mpb.WithWidth(32), mpb.WithAutoRefresh())
	bar := p.AddBar(int64(total),
		mpb.PrependDecorators(
			decor.Name(name+" "),
			decor.CountersNoUnit("%d/%d"),
		),
		mpb.AppendDecorators(
			decor.AverageSpeed(nil, " %.1f users/s"),
			decor.Name("  ETA "),
			decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO), "done"),
			decor.Any(func(decor.Statistics) string {
				if n := u.failed.Load(); n > 0 {
					return fmt.Sprintf("  %d failed", n)
				}
				return ""
			}),
		),
	)
	u.mu.Lock()
	u.progress, u.bar = p, bar
	u.mu.Unlock()
}

// row is called for every reported user, in roster order.
func (u *ui) row(r report.Row) {
	u.done.Add(1)
	if r.Status == report.Failed {
		u.failed.Add(1)
		u.mu.Lock()
		u.nfailed++
		if len(u.failures) < maxListedFailures {
			u.failures = append(u.failures, r)
		}
		u.mu.Unlock()
		// Said as it happens (above the bar on a terminal), and again in the summary.
		u.log.Info("user failed", "user", r.Localpart, "errcode", r.Errcode, "error", r.Error)
	} else {
		u.log.Debug(string(r.Status), "user", r.Localpart, "user_id", r.UserID)
	}
	u.mu.Lock()
	bar := u.bar
	u.mu.Unlock()
	if bar != nil {
		bar.Increment()
	}
}

func (u *ui) stop() {
	if u.ticker != nil {
		u.ticker.Stop()
		close(u.tickDone)
		u.ticker = nil
	}
	u.mu.Lock()
	p, bar := u.progress, u.bar
	u.mu.Unlock()
	if p == nil {
		return
	}
	if !bar.Completed() {
		bar.Abort(false)
	}
	p.Wait()
	u.mu.Lock()
	u.progress, u.bar = nil, nil
	u.mu.Unlock()
}

func (u *ui) credentialsWritten(n int, path string) {
	u.credentials = path
	if u.quiet {
		return
	}
	if u.json {
		if u.opts.Plaintext {
			u.log.Warn("the passwords are in the credentials file UNENCRYPTED (mode 0600): move them to a safe place and delete the file",
				"users", n, "credentials", path, "encrypted", false)
			return
		}
		u.log.Info("passwords written to the credentials file, encrypted with age",
			"users", n, "credentials", path, "encrypted", true,
			"open_with", "age -d -i YOUR-KEY-FILE "+path,
			"note", "the server cannot force a password change: ask each person to change theirs at first login")
		return
	}
	if u.opts.Plaintext {
		fmt.Fprintf(u.out, "WARNING: the passwords of %d user(s) are in %s UNENCRYPTED (mode 0600): move them to a safe place and delete the file\n", n, path)
		return
	}
	fmt.Fprintf(u.out, "passwords of %d user(s) written to %s, encrypted with age; open it with:\n  age -d -i YOUR-KEY-FILE %s\n", n, path, path)
	fmt.Fprintln(u.out, "  (the server cannot force a password change: ask each person to change theirs at first login)")
}

// summary prints what the run did (report.WriteSummaryText); with --log-format
// json, as one "summary" record, at level ERROR when some users failed (the run exits
// 1), else INFO. With --quiet it prints only the failures, and nothing after a clean
// run.
func (u *ui) summary(s *report.Summary) {
	if s == nil || (u.quiet && u.nfailed == 0) {
		return
	}
	opts := report.SummaryOptions{DryRun: u.opts.DryRun, Failed: u.nfailed, Failures: u.failures, Hint: hint}
	if !u.json {
		_ = report.WriteSummaryText(u.out, s, opts)
		return
	}
	attrs := append(report.SummaryAttrs(s, opts), "report", u.opts.Report)
	if u.credentials != "" {
		attrs = append(attrs, "credentials", u.credentials)
	}
	level := slog.LevelInfo
	if u.nfailed > 0 {
		level = slog.LevelError
	}
	u.log.Log(context.Background(), level, "summary", attrs...)
}

// logFinalError is how the error a run ends with reaches stderr. In text mode main
// prints it. With --log-format json it is logged here instead, as one record with the
// hint in a field of its own, and main is told that it has been said, so that every
// line on stderr stays JSON.
func logFinalError(cfg *config.Config, stderr io.Writer, err error) error {
	var silent *silentError
	if err == nil || cfg.LogFormat != "json" || errors.As(err, &silent) {
		return err
	}
	secrets := secretsOf(cfg)
	log := slog.New(redact.NewHandler(slog.NewJSONHandler(stderr, nil), secrets))
	code := codeOf(err)
	// The hint is a field of its own, taken from the error's type, not its text.
	msg, hint := err.Error(), ""
	var ce *cliError
	var cfgErr *config.Error
	switch {
	case errors.As(err, &ce):
		msg, hint = ce.err.Error(), ce.hint
	case errors.As(err, &cfgErr):
		msg, hint = cfgErr.Msg, cfgErr.Hint
	}
	if hint != "" {
		log.Error(msg, "exit_code", code, "hint", hint)
	} else {
		log.Error(msg, "exit_code", code)
	}
	return &silentError{code: code}
}

// close flushes whatever is left on stderr.
func (u *ui) close() { _ = u.out.Flush() }
