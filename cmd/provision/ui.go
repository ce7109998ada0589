package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

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
type ui struct {
	out   *redact.Writer // stderr, with secrets blanked out
	raw   io.Writer      // stderr as it is, for the progress bar's escape codes
	log   *slog.Logger
	quiet bool
	tty   bool

	mu       sync.Mutex
	progress *mpb.Progress
	bar      *mpb.Bar
	failed   atomic.Int64
	failures []report.Row // kept for the summary; bounded
	nfailed  int
}

const maxListedFailures = 50

func newUI(cfg *config.Config, stderr io.Writer, secrets *redact.Set) *ui {
	u := &ui{quiet: cfg.Quiet}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
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
	if cfg.LogFormat == "json" {
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

func (u *ui) info(msg string) {
	if !u.quiet {
		fmt.Fprintln(u.out, msg)
	}
}

// start shows a progress bar on a terminal. Elsewhere (cron, CI, a pipe) nothing is
// drawn: no escape codes end up in a log file.
func (u *ui) start(total int, cfg *config.Config) {
	if !u.tty || u.quiet {
		return
	}
	name := "provisioning"
	if cfg.DryRun {
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
	if r.Status == report.Failed {
		u.failed.Add(1)
		u.mu.Lock()
		u.nfailed++
		if len(u.failures) < maxListedFailures {
			u.failures = append(u.failures, r)
		}
		u.mu.Unlock()
		u.log.Debug("failed", "user", r.Localpart, "errcode", r.Errcode, "error", r.Error)
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

func (u *ui) credentialsWritten(n int, cfg *config.Config) {
	if u.quiet {
		return
	}
	if cfg.Plaintext {
		fmt.Fprintf(u.out, "WARNING: the passwords of %d user(s) are in %s UNENCRYPTED (mode 0600): move them to a safe place and delete the file\n", n, cfg.Credentials)
		return
	}
	fmt.Fprintf(u.out, "passwords of %d user(s) written to %s, encrypted with age; open it with:\n  age -d -i YOUR-KEY-FILE %s\n", n, cfg.Credentials, cfg.Credentials)
	fmt.Fprintln(u.out, "  (the server cannot force a password change: ask each person to change theirs at first login)")
}

// summary prints the counts and every failed user with what to do about it.
func (u *ui) summary(s *report.Summary, cfg *config.Config) {
	if s == nil {
		return
	}
	if u.nfailed > 0 {
		fmt.Fprintf(u.out, "\n%d user(s) failed:\n", u.nfailed)
		for _, r := range u.failures {
			who := r.UserID
			if who == "" {
				who = r.Localpart
			}
			code := r.Errcode
			if code == "" {
				code = "error"
			}
			fmt.Fprintf(u.out, "  %-30s %s: %s\n", who, code, r.Error)
			if h := hintFor(r.Errcode); h != "" {
				fmt.Fprintf(u.out, "  %-30s → %s\n", "", h)
			}
		}
		if u.nfailed > len(u.failures) {
			fmt.Fprintf(u.out, "  ... and %d more: see the report\n", u.nfailed-len(u.failures))
		}
	}
	if u.quiet && u.nfailed == 0 {
		return
	}
	prefix := ""
	if cfg.DryRun {
		prefix = "dry run, nothing changed: "
	}
	fmt.Fprintf(u.out, "%s%s\n", prefix, s.String())
}

// close flushes whatever is left on stderr.
func (u *ui) close() { _ = u.out.Flush() }

// hintFor says what to do about a server's refusal.
func hintFor(errcode string) string {
	hints := map[string]string{
		"M_USER_IN_USE":      "the name is taken; if it is not the same person, choose another localpart",
		"M_INVALID_USERNAME": "the server refused the name: use only a-z, 0-9 and . _ = - / +",
		"M_EXCLUSIVE":        "the name is reserved by an application service (a bridge): choose another localpart",
		"M_WEAK_PASSWORD":    "the password is too weak for the server: raise --password-length or fix the roster's password",
		"M_FORBIDDEN":        "the server refused: check that the shared secret is the one in its config",
		"M_LIMIT_EXCEEDED":   "the server kept rate-limiting: lower --rate or --concurrency and run again",
		"M_UNKNOWN":          "see the server's log for the cause, then run again",
		"":                   "a network or server error: run the same command again; done users are not touched",
	}
	return hints[errcode]
}
