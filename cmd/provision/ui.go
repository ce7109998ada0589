package main

import (
	"github.com/provision-matrix/provision/internal/matrix"

	"github.com/provision-matrix/provision/internal/sanitize"

	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
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
	level := slog.LevelInfo
	switch cfg.LogLevel {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
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

// summary prints what the run did: a table of counts per status, then every failed
// user with the server's errcode, its message and what to do about it. With --quiet it
// prints only the failures, and nothing after a clean run.
func (u *ui) summary(s *report.Summary) {
	if s == nil || (u.quiet && u.nfailed == 0) {
		return
	}
	if u.json {
		u.summaryJSON(s)
		return
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	title := fmt.Sprintf("%d user%s", s.Total, plural(s.Total))
	if u.opts.DryRun {
		title = "dry run, nothing was changed: " + title
	}
	took := s.Duration().Round(time.Millisecond)
	if secs := s.Duration().Seconds(); secs >= 0.5 && s.Total > 0 {
		fmt.Fprintf(&b, "\n%s in %s (%.1f users/s):\n", title, took, float64(s.Total)/secs)
	} else {
		fmt.Fprintf(&b, "\n%s in %s:\n", title, took)
	}
	for _, st := range statusOrder(s) {
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", st, s.Counts[st], statusMeaning[st])
	}
	tw.Flush()

	if u.nfailed > 0 {
		fmt.Fprintf(&b, "\n%d user%s failed:\n", u.nfailed, plural(u.nfailed))
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  USER\tERRCODE\tMESSAGE")
		for _, r := range u.failures {
			who := r.UserID
			if who == "" {
				who = r.Localpart
			}
			code := r.Errcode
			if code == "" {
				code = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", printable(who, 80), printable(code, 40), printable(r.Error, 300))
			if h := hint(r); h != "" {
				fmt.Fprintf(tw, "  \t\thint: %s\n", h)
			}
		}
		tw.Flush()
		if more := u.nfailed - len(u.failures); more > 0 {
			fmt.Fprintf(&b, "  ... and %d more: see the report\n", more)
		}
	}
	fmt.Fprint(u.out, b.String())
}

// failedUser is a failed user in the JSON summary.
type failedUser struct {
	User    string `json:"user"`
	UserID  string `json:"user_id,omitempty"`
	Errcode string `json:"errcode"`
	Error   string `json:"error"`
	Hint    string `json:"hint,omitempty"`
}

// summaryJSON is the summary as one "summary" record: at level ERROR when some users
// failed (the run exits 1), else INFO. JSON escapes what printable would, so the
// server's text goes in whole.
func (u *ui) summaryJSON(s *report.Summary) {
	counts := []any{}
	for _, st := range statusOrder(s) {
		counts = append(counts, slog.Int(string(st), s.Counts[st]))
	}
	attrs := []any{
		"users", s.Total,
		slog.Group("counts", counts...),
		"dry_run", u.opts.DryRun,
		"seconds", s.Duration().Seconds(),
	}
	level := slog.LevelInfo
	if u.nfailed > 0 {
		level = slog.LevelError
		failed := make([]failedUser, 0, len(u.failures))
		for _, r := range u.failures {
			failed = append(failed, failedUser{User: r.Localpart, UserID: r.UserID, Errcode: r.Errcode, Error: r.Error, Hint: hint(r)})
		}
		attrs = append(attrs, "failed", failed)
		if more := u.nfailed - len(u.failures); more > 0 {
			attrs = append(attrs, "failed_not_listed", more) // the report has every one
		}
	}
	attrs = append(attrs, "report", u.opts.Report)
	if u.credentials != "" {
		attrs = append(attrs, "credentials", u.credentials)
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
	secrets := &redact.Set{}
	for _, s := range cfg.Secrets() {
		secrets.Add(string(s))
	}
	log := slog.New(redact.NewHandler(slog.NewJSONHandler(stderr, nil), secrets))
	code := codeOf(err)
	// Errors end with their hint on a line of their own (see failure): a field here.
	msg, hint, ok := strings.Cut(err.Error(), "\n  hint: ")
	if ok {
		log.Error(msg, "exit_code", code, "hint", hint)
	} else {
		log.Error(msg, "exit_code", code)
	}
	return &silentError{code: code}
}

// statusMeaning explains each status in the summary table.
var statusMeaning = map[report.Status]string{
	report.Created:     "new accounts; their passwords are in the handoff",
	report.Exists:      "already on the server; not touched",
	report.Updated:     "existing accounts changed to match the roster",
	report.Unchanged:   "already matching the roster",
	report.Deactivated: "gone from the roster; deactivated",
	report.Skipped:     "nothing sent (a dry run, or interrupted first)",
	report.Failed:      "see below and the report",
}

// statusOrder lists the statuses a summary has, in the order a reader expects.
func statusOrder(s *report.Summary) []report.Status {
	known := []report.Status{report.Created, report.Updated, report.Unchanged, report.Exists, report.Deactivated, report.Skipped, report.Failed}
	var out []report.Status
	for _, st := range known {
		if s.Counts[st] > 0 {
			out = append(out, st)
		}
	}
	var extra []report.Status
	for st, n := range s.Counts {
		if n > 0 && !slices.Contains(known, st) {
			extra = append(extra, st)
		}
	}
	slices.Sort(extra)
	return append(out, extra...)
}

// printable makes a server's text safe to show in the summary (sanitize.Visible).
func printable(s string, max int) string { return sanitize.Visible(s, max) }

// close flushes whatever is left on stderr.
func (u *ui) close() { _ = u.out.Flush() }

// hint says what to do about a failed user, from the server's errcode and, where
// one errcode covers several causes, its message.
func hint(r report.Row) string {
	msg := strings.ToLower(r.Error)
	switch {
	case strings.Contains(msg, "hmac incorrect"), strings.Contains(msg, "bad mac"):
		return "the shared secret is not the server's registration_shared_secret: check the file you gave provision"
	case strings.Contains(msg, "nonce"):
		return "the server forgot the registration nonce (a restart, or Synapse workers that do not share it): run again; route /_synapse/admin to one process if it persists"
	case strings.Contains(msg, "external id is already in use"):
		return "another account is already bound to this person's single sign-on identity (sso_provider, sso_subject): find it in Synapse's admin API (GET /_synapse/admin/v1/auth_providers/PROVIDER/users/SUBJECT) and fix the roster or that account"
	case r.Errcode == "" && strings.Contains(msg, "404"):
		return "the shared-secret endpoint is missing: the server has no registration_shared_secret, or it delegates logins to Matrix Authentication Service (see docs/troubleshooting.md)"
	}
	return hintFor(r.Errcode)
}

// hintFor says what to do about a server's refusal, by errcode.
func hintFor(errcode string) string {
	hints := map[string]string{
		matrix.ErrcodeUserInUse:       "the name belongs to another account: if it is not the same person, give this one another localpart",
		matrix.ErrcodeInvalidUsername: "the server refused the name: use only a-z, 0-9 and . _ = - / +",
		matrix.ErrcodeExclusive:       "the name is reserved by an application service (a bridge): choose another localpart",
		matrix.ErrcodeWeakPassword:    "the password is too weak for the server: raise --password-length or fix the roster's password",
		matrix.ErrcodeForbidden:       "the server refused: check that the shared secret is the one in its config",
		matrix.ErrcodeLimitExceeded:   "the server kept rate-limiting: lower --rate or --concurrency and run again",
		matrix.ErrcodeBadJSON:         "the server could not take the request; Dendrite answers this for a localpart that is too long: shorten it",
		matrix.ErrcodeUnknown:         "see the server's log for the cause, then run again",
		"":                            "a network or server error: run the same command again; done users are not touched",
	}
	return hints[errcode]
}
