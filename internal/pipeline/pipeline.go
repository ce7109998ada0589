// Package pipeline is provision's one run, in order, and the account systems it runs
// against:
//
//	roster ─► check ─► preflight ─► journal ─► plan (sync) ─► apply ─► handoff ─► report
//
// What differs between shared-secret registration, Synapse's admin API and the Matrix
// Authentication Service is a mode (modes.go, mas.go), chosen by the configuration.
// The pipeline prints nothing itself: what the operator sees goes through an Observer,
// and its errors say what failed (errors.go) — cmd/provision turns them into exit
// codes and advice.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/batch"
	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/handoff"
	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/password"
	"github.com/provision-matrix/provision/internal/reconcile"
	"github.com/provision-matrix/provision/internal/report"
	"github.com/provision-matrix/provision/internal/roster"
	"github.com/provision-matrix/provision/internal/safefile"
)

// maxPlanLines bounds how much of the plan an applying run prints on stderr; `provision
// plan` prints all of it.
const maxPlanLines = 100

// Observer is what the operator sees of a run: log records, notices, the progress of
// the batch, where the passwords went, and the summary. cmd/provision's terminal UI
// implements it.
type Observer interface {
	Log() *slog.Logger
	// Info says msg on a line of its own; a "WARNING: " prefix marks a warning.
	Info(msg string)
	// WouldStop says that a dry run found what would stop a real run before any
	// change: err, the error the real run would end with.
	WouldStop(err error)
	// Start, Row and Stop follow the batch: Row is called for every user, in roster
	// order.
	Start(total int)
	Row(r report.Row)
	Stop()
	CredentialsWritten(n int, path string)
	Summary(s *report.Summary)
}

// Result is how a run that returned no error ended.
type Result struct {
	Summary     *report.Summary // nil until the batch ran
	Interrupted bool            // stopped by ctx (Ctrl-C, SIGTERM); the run resumes from the journal
	FailedUsers int             // users who failed, each on a row of the report and in the summary
}

// Run is the one pipeline every account system and roster source goes through:
// the roster is checked offline, the server through its preflight, then the journal,
// the plan (sync), the batch, the handoff and the report. An error says why the run
// stopped; the Result, which is returned with it too, what it did.
func Run(ctx context.Context, cfg *config.Config, obs Observer, stdin io.Reader, stdout io.Writer) (res Result, err error) {
	log := obs.Log()
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, cfg.Timeout, errTimeout{cfg.Timeout})
		defer cancel()
	}
	m, err := newMode(cfg, log)
	if err != nil {
		return res, err
	}

	// 1. The roster, offline: every problem is reported before anything is sent.
	cr, err := checkRoster(ctx, cfg, stdin)
	if err != nil {
		return res, err
	}
	defer cr.src.Close()
	log.Debug("roster checked", "users", cr.stats.Users, "file", cr.src.Name())
	if d, ok := cr.src.(*DirectorySource); ok {
		log.Info(d.Summary())
	}
	if ra, ok := m.(rosterAware); ok {
		ra.useRoster(func(fn func(roster.User) error) error {
			o := cr.opts
			o.Checked = true
			return cr.src.Each(o, fn)
		})
	}

	// 2. What must be right before the first request: recipients and output files.
	var rcpts []age.Recipient
	if !cfg.DryRun {
		if rcpts, err = OperatorRecipients(cfg); err != nil {
			return res, err
		}
	}
	if err := checkOutputs(cfg, cr.withRecipient); err != nil {
		return res, err
	}

	// 3. The server, reading only: does it answer, can this account system work with
	// it, which server name and password policy does it use. Through the same request
	// engine as the run, so a passing 429 or 503 is waited out, not fatal.
	hc, err := matrix.NewHTTPClient(matrix.HTTPOptions{CAFile: cfg.CAFile, Conns: cfg.Concurrency, RequestTimeout: cfg.RequestTimeout})
	if err != nil {
		return res, err
	}
	client, err := matrix.NewClient(cfg.Homeserver, hc)
	if err != nil {
		return res, kind(ErrInvalid, fmt.Errorf("--homeserver: %w", err))
	}
	engine := batch.NewEngine(batchOptions(cfg), log, secretStrings(cfg))
	srv, err := m.preflight(ctx, engine, client)
	if err != nil {
		return res, err
	}
	policy := cr.policy
	if srv.policy != nil {
		policy = policy.Merge(*srv.policy)
	}
	if policy != cr.policy || (cr.opts.ServerName == "" && srv.serverName != "") {
		// The server's policy is stricter than the config's, or the server name is
		// known now: supplied passwords and user ID lengths are checked again, before
		// anything is created.
		cr.opts.CheckPassword = policy.Check
		if cr.opts.ServerName == "" {
			cr.opts.ServerName = srv.serverName
		}
		if _, err := cr.src.Check(cr.opts); err != nil {
			return res, err
		}
	}
	// The roster-size guard (directory.go): before anything is changed, and with the
	// server name known, since the last count is kept per server.
	if err := checkRosterSize(cfg, srv.serverName, cr.stats.Users); err != nil {
		if !cfg.DryRun {
			return res, err
		}
		obs.WouldStop(err)
	}
	gen, err := password.NewGenerator(cfg.PasswordLength, policy, nil)
	if err != nil {
		return res, kind(ErrInvalid, fmt.Errorf("--password-length %d: %w", cfg.PasswordLength, err))
	}

	// 4. The journal: where this server's runs record every password before it is
	// sent. Its lock keeps two runs against one server apart, from the plan to the
	// last change.
	jpath := journalPath(cfg, srv.serverName)
	var jr *journal.Journal
	if cfg.DryRun {
		if busy, _ := journalBusy(jpath); busy {
			return res, fmt.Errorf("journal %s: %w: a run is changing the server right now; plan again when it has finished", jpath, journal.ErrLocked)
		}
		if ja, ok := m.(journalAware); ok {
			// The plan needs the journal to know which accounts provision created.
			if _, statErr := os.Stat(jpath); statErr == nil {
				ro := *cfg
				ro.Fresh = false
				if jr, err = openJournal(&ro, jpath, srv.serverName, m); err != nil {
					return res, err
				}
				defer jr.Close()
				ja.useJournal(jr)
			}
		}
	} else {
		if jr, err = openJournal(cfg, jpath, srv.serverName, m); err != nil {
			return res, err
		}
		defer jr.Close()
		if prev := jr.Previous(); prev != "" {
			log.Info("started a new journal; the old one is kept", "old", prev)
		}
		if ja, ok := m.(journalAware); ok {
			ja.useJournal(jr)
		}
		log.Debug("journal", "path", jpath)
	}

	runner := &batch.Runner{
		Accounts:  m.accounts(),
		Server:    client,
		API:       m.adminAPI(),
		Passwords: gen,
		Log:       log,
		Engine:    engine,
		Opts:      batchOptions(cfg),
		Secrets:   secretStrings(cfg),
		Sync:      syncOptions(cfg),
		Self:      srv.self,
	}
	runner.Opts.ServerName = srv.serverName
	if runner.Sync.LeaveDropped {
		if runner.Sync.ManagedRooms, err = managedRooms(cfg); err != nil {
			return res, err
		}
	}
	if jr != nil && !cfg.DryRun {
		runner.Journal = jr
	}
	// The second pass keeps no per-user state: a million-user roster streams in
	// constant memory next to the journal's index.
	ropts := cr.opts
	ropts.Checked = true
	source := func(yield func(roster.User) error) error { return cr.src.Each(ropts, yield) }

	// 5. A sync's plan: what must change, read from the server, checked against
	// --max-deactivate before anything changes.
	var plan *reconcile.Plan
	if m.sync() {
		if plan, err = runner.Plan(ctx, source); err != nil {
			if errors.Is(err, batch.ErrInterrupted) && !timedOut(ctx) {
				res.Interrupted = true
				return res, nil
			}
			return res, planError(ctx, err)
		}
		limitErr := plan.CheckLimit()
		if cfg.DryRun {
			if err := plan.WriteText(stdout); err != nil {
				return res, fmt.Errorf("writing the plan: %w", err)
			}
			if limitErr != nil {
				obs.Info(fmt.Sprintf("WARNING: run for real, this plan would stop before changing anything: %v (--max-deactivate %d)", limitErr, cfg.MaxDeactivate))
			}
			return res, nil
		}
		printPlan(plan, obs)
		if limitErr != nil {
			return res, limitErr
		}
	}

	// 6. Apply, and hand off what was created.
	rep, err := openReport(cfg.Report, stdout)
	if err != nil {
		return res, err
	}
	defer rep.abort()
	var ho *handoff.Delivery
	if !cfg.DryRun {
		creds, err := handoff.CreateCredentials(cfg.Credentials, rcpts, handoff.CredentialsOptions{Plaintext: cfg.Plaintext})
		if err != nil {
			return res, kind(ErrInvalid, err)
		}
		defer creds.Abort()
		ho = &handoff.Delivery{Credentials: creds, Homeserver: cfg.Homeserver, HandoffDir: cfg.HandoffDir, OperatorCopy: cfg.OperatorCopy}
		runner.Handoff = ho
	}
	runner.Sink = rep.w
	runner.OnRow = obs.Row
	var sum *report.Summary
	var runErr error
	if plan != nil {
		obs.Start(plan.Len())
		sum, runErr = runner.Apply(ctx, plan)
	} else {
		obs.Start(cr.stats.Users)
		sum, runErr = runner.Run(ctx, source)
	}
	res.Summary = sum
	obs.Stop()

	// Whatever happened, keep what was done: the credentials of everyone created so
	// far, then the report of every user.
	var finishErr error
	if ho != nil {
		finishErr = finishHandoff(ho, jr, jpath, runErr, obs)
	}
	if err := rep.commit(); err != nil && finishErr == nil {
		finishErr = fmt.Errorf("writing the report: %w", err)
	}
	obs.Summary(sum)
	if runErr == nil && finishErr == nil && !cfg.DryRun {
		// A completed run's roster size is the next run's yardstick (directory.go).
		if err := saveRosterSize(cfg, srv.serverName, cr.stats.Users); err != nil {
			log.Warn("could not record the roster's size for the next run's --min-roster-ratio check", "error", err.Error())
		}
	}

	switch {
	case runErr != nil && errors.Is(runErr, batch.ErrInterrupted):
		if timedOut(ctx) {
			return res, &StopError{Kind: StopTimeout, Err: runErr}
		}
		res.Interrupted = true
		return res, nil
	case runErr != nil:
		return res, &StopError{Kind: StopFailed, Err: runErr, Journal: jpath}
	case finishErr != nil:
		return res, &StopError{Kind: StopFinish, Err: finishErr}
	case sum.Counts[report.Failed] > 0:
		res.FailedUsers = sum.Counts[report.Failed]
		return res, nil
	case runner.FailedJoins() > 0:
		n := runner.FailedJoins()
		list := strings.Join(runner.FailedJoinErrors(), "\n    ")
		if more := n - len(runner.FailedJoinErrors()); more > 0 {
			list += fmt.Sprintf("\n    ... and %d more: see the report", more)
		}
		return res, &StopError{Kind: StopJoins,
			Err: fmt.Errorf("%d room join%s failed (the accounts themselves are fine; the report has each on its row):\n    %s", n, plural(n), list)}
	}
	return res, nil
}

// errTimeout is the cause of a run stopped by --timeout.
type errTimeout struct{ d fmt.Stringer }

func (e errTimeout) Error() string { return fmt.Sprintf("--timeout %s reached", e.d) }

// timedOut says whether --timeout, rather than a signal, stopped ctx.
func timedOut(ctx context.Context) bool {
	var te errTimeout
	return errors.As(context.Cause(ctx), &te)
}

// batchOptions are the request engine's and the pool's settings.
func batchOptions(cfg *config.Config) batch.Options {
	return batch.Options{
		Concurrency:    cfg.Concurrency,
		Rate:           cfg.Rate,
		AutoRate:       cfg.RateAuto,
		ServerName:     cfg.ServerName,
		DryRun:         cfg.DryRun,
		RequestTimeout: cfg.RequestTimeout,
		RetryBudget:    cfg.RetryBudget,
		MaxRetryAfter:  cfg.MaxRetryAfter,
	}
}

func syncOptions(cfg *config.Config) reconcile.Options {
	return reconcile.Options{
		Update:            cfg.Update,
		DeactivateMissing: cfg.DeactivateMissing,
		Erase:             cfg.Erase,
		MaxDeactivate:     cfg.MaxDeactivate,
		ResetPasswords:    cfg.ResetPasswords,
		LogoutDevices:     cfg.LogoutDevices,
		LeaveDropped:      cfg.LeaveDroppedRooms,
		// MAS does not hold display names; without Synapse's admin API they cannot
		// be read, so they are not compared.
		NoDisplayName: cfg.Mode() == config.ModeMAS && cfg.AdminToken == nil,
	}
}

func secretStrings(cfg *config.Config) []string {
	var out []string
	for _, s := range cfg.Secrets() {
		out = append(out, string(s))
	}
	return out
}

// planError says why the plan could not be made; nothing was changed.
func planError(ctx context.Context, err error) error {
	if errors.Is(err, batch.ErrInterrupted) {
		return &StopError{Kind: StopPlanTimeout, Err: fmt.Errorf("%w: nothing was changed", err)}
	}
	var pe *Error
	if errors.As(err, &pe) || errors.Is(err, matrix.ErrNoAdminAPI) || errors.Is(err, matrix.ErrBadToken) || errors.Is(err, matrix.ErrNotAdmin) {
		return err
	}
	return &StopError{Kind: StopPlanFailed, Err: fmt.Errorf("reading the server's accounts: %w: nothing was changed", err)}
}

// printPlan shows an applying run's plan on stderr, as an audit trail in cron mail
// and journald; `provision plan` is the way to read a long one.
func printPlan(p *reconcile.Plan, obs Observer) {
	lines := p.Lines()
	for i, l := range lines {
		if i == maxPlanLines {
			obs.Info(fmt.Sprintf("... and %d more changes (provision plan lists them all)", len(lines)-maxPlanLines))
			break
		}
		obs.Info(l)
	}
	obs.Info("plan: " + p.Summary())
}

// Checkpointer is the journal as Finish checkpoints it; tests replace it to crash a
// run between the credentials file's rename and the checkpoint.
var Checkpointer = func(jr *journal.Journal) handoff.Checkpointer { return jr }

// finishHandoff commits the credentials file and checkpoints the journal (see
// handoff.Delivery.Finish), and says where the passwords are.
func finishHandoff(ho *handoff.Delivery, jr *journal.Journal, jpath string, runErr error, obs Observer) error {
	runFailed := runErr != nil && !errors.Is(runErr, batch.ErrInterrupted)
	fin, err := ho.Finish(Checkpointer(jr), runFailed)
	if err != nil {
		return fmt.Errorf("writing the credentials file: %w (the passwords are still in the journal %s: run the same command again)", err, jpath)
	}
	if fin.Count > 0 {
		obs.CredentialsWritten(fin.Count, fin.Credentials)
	} else if fin.Welcomes == 0 && runErr == nil {
		obs.Info("nobody was created, so no credentials file was written")
	}
	if fin.Welcomes > 0 {
		obs.Info(fmt.Sprintf("%d welcome file(s), each encrypted to its user's own key, are in %s/", fin.Welcomes, ho.HandoffDir))
	}
	switch {
	case errors.Is(fin.NoCheckpoint, handoff.ErrRunFailed):
		obs.Log().Warn("the run stopped on an error, so the next run will hand this run's passwords off once more")
	case fin.NoCheckpoint != nil:
		obs.Log().Warn("could not record the handoff in the journal; the next run will hand these passwords off again", "error", fin.NoCheckpoint.Error())
	}
	return nil
}

// checkedRoster is a roster that passed the offline check, with the options that
// read it again.
type checkedRoster struct {
	src           RosterSource
	opts          roster.Options
	stats         roster.Stats
	policy        password.Policy // the configured one; the server's may add to it
	withRecipient bool            // some user has a key of their own: the handoff directory is needed
}

// checkRoster reads the whole roster once and reports every problem in it, before
// anything is sent to the server.
func checkRoster(ctx context.Context, cfg *config.Config, stdin io.Reader) (*checkedRoster, error) {
	columns, err := roster.ParseColumns(cfg.Columns)
	if err != nil {
		return nil, kind(ErrInvalid, err)
	}
	var src RosterSource
	if cfg.IsDirectory() {
		src, err = NewDirectorySource(ctx, cfg) // directory.go
	} else {
		src, err = OpenRoster(cfg.Roster, cfg.Format, stdin)
	}
	if err != nil {
		return nil, err
	}
	cr := &checkedRoster{src: src, policy: cfg.Policy}
	cr.opts = roster.Options{
		Columns:       columns,
		Format:        RosterFormat(cfg),
		ServerName:    cfg.ServerName,
		SSOProvider:   cfg.SSOProvider,
		CheckPassword: cr.policy.Check,
		CheckRecipient: func(s string) error {
			cr.withRecipient = true
			_, err := handoff.ParseRecipient(s)
			return err
		},
	}
	if cr.stats, err = src.Check(cr.opts); err != nil {
		src.Close()
		return nil, err
	}
	return cr, nil
}

// RosterFormat is --format, or the one the roster's file name tells.
func RosterFormat(cfg *config.Config) roster.Format {
	if cfg.Format != "" || cfg.Roster == "-" {
		return roster.Format(cfg.Format)
	}
	f, _ := roster.FormatFromName(cfg.Roster)
	return f
}

// OpenRoster opens a roster file, or standard input for "-".
func OpenRoster(path, format string, stdin io.Reader) (*roster.Source, error) {
	if path != "-" && format == "" {
		if _, err := roster.FormatFromName(path); err != nil {
			return nil, kind(ErrInvalid, err)
		}
	}
	src, err := roster.OpenSource(path, stdin)
	if err != nil {
		if errors.Is(err, roster.ErrTooLarge) {
			return nil, err
		}
		return nil, kind(ErrRosterUnreadable, fmt.Errorf("cannot read the roster: %w", err))
	}
	return src, nil
}

// OperatorRecipients are the age recipients of the credentials file: --recipient and
// --recipients-file.
func OperatorRecipients(cfg *config.Config) ([]age.Recipient, error) {
	var rcpts []age.Recipient
	for _, s := range cfg.Recipients {
		r, err := handoff.ParseRecipient(s)
		if err != nil {
			return nil, kind(ErrInvalid, fmt.Errorf("--recipient: %w", err))
		}
		rcpts = append(rcpts, r)
	}
	if cfg.RecipientsFile != "" {
		rs, err := handoff.ReadRecipientsFile(cfg.RecipientsFile)
		if err != nil {
			return nil, kind(ErrInvalid, fmt.Errorf("--recipients-file: %w", err))
		}
		rcpts = append(rcpts, rs...)
	}
	if len(rcpts) == 0 && !cfg.Plaintext {
		return nil, kind(ErrNoRecipient, errors.New("no recipient for the credentials file: provision never writes passwords unencrypted unless asked"))
	}
	return rcpts, nil
}

// checkOutputs finds, before the first request, what would keep the run from storing
// its results: two outputs that are one file, a directory that is missing or not
// writable, a handoff directory that cannot be made. Found later, it would stop the
// run with accounts created and not handed off. An existing credentials file is no
// obstacle: the new one goes beside it.
func checkOutputs(cfg *config.Config, withRecipient bool) error {
	outs := []safefile.Output{
		{Flag: "--report", Path: cfg.Report},
		{Flag: "--metrics-file", Path: cfg.MetricsFile},
		{Flag: "--config", Path: cfg.ConfigFile},
		{Flag: "--roster", Path: cfg.Roster},
	}
	if !cfg.DryRun {
		outs = append(outs,
			safefile.Output{Flag: "--credentials", Path: cfg.Credentials},
			safefile.Output{Flag: "--journal", Path: cfg.Journal},
		)
	}
	if err := safefile.CheckDistinct(outs...); err != nil {
		return kind(ErrSameFile, fmt.Errorf("%w: nothing was sent", err))
	}
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
	// The journal: an explicit --journal's directory must exist; the state directory
	// is made (0700) when it is the default place.
	jdir := cfg.StateDir
	if cfg.Journal != "" {
		jdir = filepath.Dir(cfg.Journal)
	} else if err := os.MkdirAll(jdir, 0o700); err != nil {
		return kind(ErrStateDir, fmt.Errorf("the state directory %s cannot be made: %w", jdir, err))
	}
	if err := checkWritable("--journal", cfg.Journal, jdir); err != nil {
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
				return kind(ErrHandoffDir, fmt.Errorf("--handoff-dir %s cannot be made: %w", cfg.HandoffDir, err))
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
		return kind(ErrNotWritable, fmt.Errorf("%s %s: cannot create a file in %s: %w", flag, path, dir, err))
	}
	name := f.Name()
	f.Close()
	_ = os.Remove(name)
	return nil
}

// reportFile is the report's destination: a file written atomically, or stdout.
type reportFile struct {
	w      report.Writer
	file   *safefile.File
	closed bool
}

func openReport(path string, stdout io.Writer) (*reportFile, error) {
	f, err := report.FormatFor(path)
	if err != nil {
		return nil, kind(ErrInvalid, err)
	}
	rf := &reportFile{}
	var out io.Writer = stdout
	if path != "-" {
		// The report holds no secret, but it is replaced whole so that a reader (or a
		// monitoring job) never sees half of it.
		safefile.RemoveStale(path)
		rf.file, err = safefile.Create(path, true)
		if err != nil {
			return nil, kind(ErrInvalid, fmt.Errorf("report: %w", err))
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

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
