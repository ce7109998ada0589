package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/batch"
	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/handoff"
	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/password"
	"github.com/provision-matrix/provision/internal/redact"
	"github.com/provision-matrix/provision/internal/report"
	"github.com/provision-matrix/provision/internal/roster"
	"github.com/provision-matrix/provision/internal/safefile"
)

// maxStdinRoster bounds a roster read from standard input, which is kept in memory for
// the two passes (check, then provision). A larger roster belongs in a file.
const maxStdinRoster = 512 << 20

func runProvision(ctx context.Context, cfg *config.Config, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	limitMemory()
	metrics := startMetrics(cfg)
	defer func() { err = metrics.finish(err, stderr) }()
	secrets := &redact.Set{}
	secrets.Add(string(cfg.SharedSecret))
	secrets.Add(string(cfg.AdminToken))
	ui := newUI(cfg, stderr, secrets)
	defer ui.close()
	log := ui.log
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	if w := metricsWarning(cfg); w != "" {
		log.Warn(w)
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, cfg.Timeout, fmt.Errorf("--timeout %s reached", cfg.Timeout))
		defer cancel()
	}
	if cfg.AdminToken != nil {
		// An admin token wins over a shared secret: it can do all the secret can and
		// more (see runAdmin in admin.go).
		sum, err := runAdmin(ctx, cfg, stdin, stdout, ui)
		metrics.sum = sum
		return err
	}

	// 1. The roster, offline: every problem is reported before anything is sent.
	cr, err := checkRoster(cfg, stdin, log)
	if err != nil {
		return err
	}
	src, ropts, stats, localPolicy, withRecipient := cr.src, cr.opts, cr.stats, cr.policy, cr.withRecipient

	// 2. What must be right before the first request: recipients, output files, journal.
	var rcpts []age.Recipient
	if !cfg.DryRun {
		rcpts, err = operatorRecipients(cfg)
		if err != nil {
			return err
		}
	}
	if err := checkOutputs(cfg, withRecipient); err != nil {
		return err
	}

	// 3. The server: does it answer, does it have the shared-secret endpoint, which
	// password policy and server name does it use. Read-only requests.
	client, err := newClient(cfg)
	if err != nil {
		return err
	}
	serverName, err := preflight(ctx, client, cfg, log)
	if err != nil {
		return err
	}
	policy := serverPolicy(ctx, client, localPolicy, log)
	if policy != localPolicy {
		// The server's policy is stricter than the config's: supplied passwords must
		// meet it too, before anything is created.
		ropts.CheckPassword = policy.Check
		if _, err := src.check(ropts); err != nil {
			return err
		}
	}
	if ropts.ServerName == "" {
		ropts.ServerName = serverName
	}
	gen, err := password.NewGenerator(cfg.PasswordLength, policy, nil)
	if err != nil {
		return usageError{fmt.Errorf("--password-length %d: %w", cfg.PasswordLength, err)}
	}

	rep, err := openReport(cfg.Report, stdout)
	if err != nil {
		return err
	}
	defer rep.abort()

	runner := &batch.Runner{
		Server: client,
		Secret: cfg.SharedSecret,
		Log:    log,
		Sink:   rep.w,
		Opts: batch.Options{
			Concurrency:    cfg.Concurrency,
			Rate:           cfg.Rate,
			AutoRate:       cfg.RateAuto,
			ServerName:     serverName,
			DryRun:         cfg.DryRun,
			RequestTimeout: cfg.RequestTimeout,
		},
		Passwords: gen,
	}

	var creds *handoff.Credentials
	var jr *journal.Journal
	var ho *delivery
	if !cfg.DryRun {
		creds, err = handoff.CreateCredentials(cfg.Credentials, rcpts, handoff.CredentialsOptions{Plaintext: cfg.Plaintext, Overwrite: cfg.Force})
		if err != nil {
			return usageError{fmt.Errorf("credentials file: %w", err)}
		}
		defer creds.Abort()
		jr, err = journal.Open(cfg.Journal, journal.DeriveKey(cfg.SharedSecret), journal.Options{Fresh: cfg.Fresh, Homeserver: cfg.Homeserver, SyncWindow: -1})
		if err != nil {
			return journalError(cfg, err)
		}
		defer jr.Close()
		if prev := jr.Previous(); prev != "" {
			log.Info("started a new journal; the old one is kept", "old", prev)
		}
		ho = &delivery{creds: creds, homeserver: cfg.Homeserver, handoffDir: cfg.HandoffDir, operatorCopy: cfg.OperatorCopy, force: cfg.Force}
		runner.Journal = jr
		runner.Handoff = ho
	}

	ui.start(stats.Users, cfg)
	runner.OnRow = ui.row
	// The first pass found no duplicate: the second keeps no per-user state, so a
	// million-user roster streams in constant memory next to the journal's index.
	ropts.Checked = true
	sum, runErr := runner.Run(ctx, func(yield func(roster.User) error) error {
		return src.each(ropts, yield)
	})
	metrics.sum = sum
	ui.stop()

	// Whatever happened, keep what was done: the credentials of everyone created so far
	// and the report of every user.
	var finishErr error
	if !cfg.DryRun {
		finishErr = finishHandoff(cfg, creds, jr, ho, runErr, ui)
	}
	if err := rep.commit(); err != nil && finishErr == nil {
		finishErr = fmt.Errorf("writing the report: %w", err)
	}
	ui.summary(sum, cfg)

	switch {
	case runErr != nil && errors.Is(runErr, batch.ErrInterrupted):
		if errors.Is(context.Cause(ctx), context.DeadlineExceeded) || strings.Contains(fmt.Sprint(context.Cause(ctx)), "--timeout") {
			return failure{err: runErr, hint: "run the same command again to finish; it resumes from the journal"}
		}
		return &silentError{code: ExitInterrupted}
	case runErr != nil:
		return failure{err: runErr, hint: "nothing is lost: every password sent is in the journal " + cfg.Journal + "; fix the cause and run the same command again"}
	case finishErr != nil:
		return failure{err: finishErr}
	case sum.Counts[report.Failed] > 0:
		return &silentError{code: ExitFailed}
	}
	return nil
}

// checkedRoster is a roster that passed the offline check, with the options that
// read it again.
type checkedRoster struct {
	src           *rosterSource
	opts          roster.Options
	stats         roster.Stats
	policy        password.Policy // the configured one; the server's may add to it
	withRecipient bool            // some user has a key of their own: the handoff directory is needed
}

// checkRoster reads the whole roster once and reports every problem in it, before
// anything is sent to the server.
func checkRoster(cfg *config.Config, stdin io.Reader, log *slog.Logger) (*checkedRoster, error) {
	src, err := openRoster(cfg, stdin)
	if err != nil {
		return nil, err
	}
	columns, err := roster.ParseColumns(cfg.Columns)
	if err != nil {
		return nil, usageError{err}
	}
	cr := &checkedRoster{src: src, policy: password.Policy(cfg.Policy)}
	cr.opts = roster.Options{
		Columns:       columns,
		Format:        roster.Format(cfg.Format),
		ServerName:    cfg.ServerName,
		CheckPassword: cr.policy.Check,
		CheckRecipient: func(s string) error {
			cr.withRecipient = true
			_, err := handoff.ParseRecipient(s)
			return err
		},
	}
	if cr.stats, err = src.check(cr.opts); err != nil {
		return nil, err
	}
	log.Debug("roster checked", "users", cr.stats.Users, "file", src.name)
	return cr, nil
}

// rosterSource reads the roster twice: once to check it, once to provision it. A file
// is simply reopened, so a million-row roster is never held in memory; standard input is
// buffered.
type rosterSource struct {
	name string
	path string
	data []byte
}

func openRoster(cfg *config.Config, stdin io.Reader) (*rosterSource, error) {
	if cfg.Roster == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, maxStdinRoster+1))
		if err != nil {
			return nil, usageError{fmt.Errorf("reading the roster from standard input: %w", err)}
		}
		if len(b) > maxStdinRoster {
			return nil, usageError{fmt.Errorf("the roster on standard input is larger than %d MiB: save it to a file and pass its name", maxStdinRoster>>20)}
		}
		return &rosterSource{name: "-", data: b}, nil
	}
	st, err := os.Stat(cfg.Roster)
	if err != nil {
		return nil, usageError{fmt.Errorf("cannot read the roster: %w", err)}
	}
	if st.IsDir() {
		return nil, usageError{fmt.Errorf("the roster %s is a directory: name a .csv or .yaml file", cfg.Roster)}
	}
	if cfg.Format == "" {
		if _, err := roster.FormatFromName(cfg.Roster); err != nil {
			return nil, usageError{err}
		}
	}
	return &rosterSource{name: cfg.Roster, path: cfg.Roster}, nil
}

func (s *rosterSource) open() (io.ReadCloser, error) {
	if s.path == "" {
		return io.NopCloser(bytes.NewReader(s.data)), nil
	}
	return os.Open(s.path)
}

func (s *rosterSource) opts(o roster.Options) roster.Options {
	if o.Format == "" && s.path != "" {
		o.Format, _ = roster.FormatFromName(s.path)
	}
	return o
}

func (s *rosterSource) check(o roster.Options) (roster.Stats, error) {
	f, err := s.open()
	if err != nil {
		return roster.Stats{}, usageError{fmt.Errorf("cannot read the roster: %w", err)}
	}
	defer f.Close()
	st, err := roster.Check(f, s.name, s.opts(o))
	if err != nil {
		return st, rosterError{err}
	}
	return st, nil
}

func (s *rosterSource) each(o roster.Options, fn func(roster.User) error) error {
	f, err := s.open()
	if err != nil {
		return err
	}
	defer f.Close()
	return roster.Each(f, s.name, s.opts(o), fn)
}

// rosterError lists every problem of the roster (exit 2).
type rosterError struct{ err error }

func (e rosterError) Error() string {
	var re *roster.Errors
	if errors.As(e.err, &re) {
		n := re.Total
		return fmt.Sprintf("the roster has %d problem%s; nothing was sent to the server:\n%s", n, plural(n), re.Error())
	}
	return e.err.Error()
}
func (e rosterError) Unwrap() error { return e.err }
func (e rosterError) ExitCode() int { return ExitUsage }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func operatorRecipients(cfg *config.Config) ([]age.Recipient, error) {
	var rcpts []age.Recipient
	for _, s := range cfg.Recipients {
		r, err := handoff.ParseRecipient(s)
		if err != nil {
			return nil, usageError{fmt.Errorf("--recipient: %w", err)}
		}
		rcpts = append(rcpts, r)
	}
	if cfg.RecipientsFile != "" {
		rs, err := handoff.ReadRecipientsFile(cfg.RecipientsFile)
		if err != nil {
			return nil, usageError{fmt.Errorf("--recipients-file: %w", err)}
		}
		rcpts = append(rcpts, rs...)
	}
	if len(rcpts) == 0 && !cfg.Plaintext {
		return nil, usageError{errors.New("no recipient for the credentials file: provision never writes passwords unencrypted unless asked\n" +
			"  hint: make a key with `age-keygen -o key.txt` and pass its public key (age1...) with --recipient,\n" +
			"        or pass an SSH public key (--recipient \"$(cat ~/.ssh/id_ed25519.pub)\"),\n" +
			"        or, if you must, --plaintext-credentials (the file is then readable by anyone who can read it, mode 0600)")}
	}
	return rcpts, nil
}

func newClient(cfg *config.Config) (*matrix.Client, error) {
	hc := matrix.DefaultHTTPClient()
	tr := hc.Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, cfg.Concurrency+4)
	tr.MaxIdleConns = max(tr.MaxIdleConns, cfg.Concurrency+4)
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, usageError{fmt.Errorf("--ca-file: %w", err)}
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageError{fmt.Errorf("--ca-file %s holds no PEM certificate", cfg.CAFile)}
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	// Each request has its own --request-timeout; the client's overall one must not cut it shorter.
	hc.Timeout = max(hc.Timeout, cfg.RequestTimeout+10*time.Second)
	c, err := matrix.NewClient(cfg.Homeserver, hc)
	if err != nil {
		return nil, usageError{fmt.Errorf("--homeserver: %w", err)}
	}
	return c, nil
}

// preflight checks, with read-only requests, that the homeserver can do the job, and
// returns the server name when it can be known before the first registration.
func preflight(ctx context.Context, c *matrix.Client, cfg *config.Config, log *slog.Logger) (serverName string, err error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	if _, err := c.Versions(ctx); err != nil {
		return "", failure{err: fmt.Errorf("no Matrix homeserver answers at %s: %w", cfg.Homeserver, err),
			hint: "check --homeserver: it is the URL clients use (the one in Element's login screen), e.g. https://matrix.example.org"}
	}
	// Checks the secret itself without creating anyone (a dry run too), so a wrong
	// secret stops the run here instead of failing every user.
	if err := c.VerifySharedSecret(ctx, cfg.SharedSecret); err != nil {
		if errors.Is(err, matrix.ErrSharedSecretMismatch) {
			return "", usageError{fmt.Errorf("%w\n  hint: the secret from %s is not the one in the server's config (registration_shared_secret)", err, cfg.SharedSecretSource)}
		}
		return "", failure{err: err}
	}
	if cfg.ServerName != "" {
		return cfg.ServerName, nil
	}
	sn, err := c.ServerName(ctx)
	if err != nil {
		log.Debug("server name not learned yet; it will be taken from the first registration", "error", err.Error())
		return "", nil
	}
	return sn, nil
}

// checkOutputs finds, before the first request, what would keep the run from storing
// its results: a directory that is missing or not writable, an earlier run's
// credentials file (replaced only with --force), a handoff directory that cannot be
// made. Found later, it would stop the run with accounts created and not handed off.
func checkOutputs(cfg *config.Config, withRecipient bool) error {
	if cfg.Report != "-" {
		if err := checkWritable("--report", cfg.Report, filepath.Dir(cfg.Report)); err != nil {
			return err
		}
	}
	if cfg.DryRun {
		return nil
	}
	if err := checkWritable("--credentials", cfg.Credentials, filepath.Dir(cfg.Credentials)); err != nil {
		return err
	}
	if _, err := os.Lstat(cfg.Credentials); err == nil && !cfg.Force {
		return usageError{fmt.Errorf("the credentials file %s exists, perhaps from an earlier run; provision never overwrites one\n"+
			"  hint: move it away, name another file with --credentials, or pass --force to replace it", cfg.Credentials)}
	}
	if err := checkWritable("--journal", cfg.Journal, filepath.Dir(cfg.Journal)); err != nil {
		return err
	}
	if withRecipient {
		// The directory is made at the first welcome file: its nearest existing
		// ancestor must be a directory we can write in.
		dir := cfg.HandoffDir
		for {
			_, err := os.Stat(dir)
			if err == nil {
				return checkWritable("--handoff-dir", cfg.HandoffDir, dir)
			}
			if !errors.Is(err, os.ErrNotExist) || filepath.Dir(dir) == dir {
				return usageError{fmt.Errorf("--handoff-dir %s cannot be made: %w\n  hint: choose another directory for the users' welcome files", cfg.HandoffDir, err)}
			}
			dir = filepath.Dir(dir)
		}
	}
	return nil
}

// checkWritable checks that a file can be created in dir, by creating and removing one.
func checkWritable(flag, path, dir string) error {
	f, err := os.CreateTemp(dir, ".provision-check-*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return usageError{fmt.Errorf("%s %s: cannot create a file in %s: %w\n  hint: create the directory or make it writable, or choose another path", flag, path, dir, err)}
	}
	name := f.Name()
	f.Close()
	_ = os.Remove(name)
	return nil
}

// serverPolicy is the configured password policy made as strict as the one the
// server publishes, if it publishes one (Synapse does; Dendrite does not).
func serverPolicy(ctx context.Context, c *matrix.Client, local password.Policy, log *slog.Logger) password.Policy {
	pol, ok, err := c.PasswordPolicy(ctx)
	switch {
	case err != nil:
		log.Warn("could not read the server's password policy; using the configured one", "error", err.Error())
	case ok:
		return local.Merge(password.Policy(pol))
	}
	return local
}

func journalError(cfg *config.Config, err error) error {
	switch {
	case errors.Is(err, journal.ErrLocked):
		return lockedError{err}
	case errors.Is(err, journal.ErrWrongKey), errors.Is(err, journal.ErrOtherHomeserver):
		return usageError{fmt.Errorf("%w\n  hint: use the same secret and --homeserver as the run that wrote %s, or start over with --fresh (the old journal is kept aside)", err, cfg.Journal)}
	}
	return usageError{err}
}

// lockedError: another run holds the journal (exit 3), the usual case being two cron
// runs that overlap.
type lockedError struct{ err error }

func (e lockedError) Error() string { return e.err.Error() }
func (e lockedError) Unwrap() error { return e.err }
func (e lockedError) ExitCode() int { return ExitLocked }

// reportFile is the report's destination: a file written atomically, or stdout.
type reportFile struct {
	w      report.Writer
	file   *safefile.File
	closed bool
}

func openReport(path string, stdout io.Writer) (*reportFile, error) {
	f, err := report.FormatFor(path)
	if err != nil {
		return nil, usageError{err}
	}
	rf := &reportFile{}
	var out io.Writer = stdout
	if path != "-" {
		// The report holds no secret, but it is replaced whole so that a reader (or a
		// monitoring job) never sees half of it.
		rf.file, err = safefile.Create(path, true)
		if err != nil {
			return nil, usageError{fmt.Errorf("report: %w", err)}
		}
		out = rf.file
	}
	rf.w, err = report.New(out, f)
	if err != nil {
		return nil, err
	}
	return rf, nil
}

func (r *reportFile) commit() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if err := r.w.Close(); err != nil {
		return err
	}
	if r.file != nil {
		return r.file.Commit()
	}
	return nil
}

func (r *reportFile) abort() {
	if r.file != nil && !r.closed {
		r.file.Abort()
	}
}
