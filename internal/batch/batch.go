// Package batch runs a provisioning job: it takes roster users one by one, and for each
// journals what it is about to do, sends the request through a bounded pool under a
// shared rate limit, resolves what the server answered, hands the credential off and
// reports the outcome.
//
// One user's failure is a row in the report, never an error that stops the others. Run
// returns an error only when the run itself cannot go on: the journal, the report or the
// handoff cannot be written, so continuing could lose a password.
package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/reconcile"
	"github.com/provision-matrix/provision/internal/report"
	"github.com/provision-matrix/provision/internal/roster"
	"github.com/provision-matrix/provision/internal/sanitize"
)

// Server is what the batch needs of the homeserver in shared-secret mode.
// *matrix.Client satisfies it.
type Server interface {
	RegisterSharedSecret(ctx context.Context, secret []byte, r matrix.Registration) (matrix.Registered, error)
	LoginSession(ctx context.Context, user, password string) (matrix.Session, error)
	Logout(ctx context.Context, token string) error
	UsernameAvailable(ctx context.Context, localpart string) (matrix.Availability, error)
}

// Journal is the write-ahead log. *journal.Journal satisfies it.
type Journal interface {
	Lookup(localpart string) (journal.Entry, bool)
	Intent(localpart, userID, password string) error
	Outcome(localpart, userID string, status journal.Status) error
}

// outcomeLater is a Journal that can also record an outcome without waiting for the
// disk, as *journal.Journal can (see journal.OutcomeLater).
type outcomeLater interface {
	OutcomeLater(localpart, userID string, status journal.Status) error
}

// outcome journals the answer to a request without waiting for it to be durable
// when the journal allows: lost in a crash, it leaves the intent, and the next run
// asks the server whether the account took this password. A user costs one fsync
// wait instead of two.
func (r *Runner) outcome(localpart, userID string, status journal.Status) error {
	if j, ok := r.Journal.(outcomeLater); ok {
		return j.OutcomeLater(localpart, userID, status)
	}
	return r.Journal.Outcome(localpart, userID, status)
}

// Passwords makes a new password for a user who has none in the roster.
type Passwords interface {
	Generate() (string, error)
}

// Handoff delivers a created user's credential: into the operator's encrypted file,
// the user's own welcome file, or both. An error stops the run: a password that cannot
// be handed off must not be followed by more.
type Handoff interface {
	Deliver(u roster.User, userID, password string, again bool) error
}

// Sink receives report rows, in roster order.
type Sink interface {
	Write(report.Row) error
}

// Source streams the roster's users in order.
type Source func(yield func(roster.User) error) error

// Journal statuses beyond the report's own: a created user whose credential has been
// committed to the handoff needs nothing more, ever. The journal reports it once a
// checkpoint follows the user's created outcome (see journal.Checkpoint).
const (
	StatusDelivered = journal.StatusDelivered
)

// Options tune a run.
type Options struct {
	Concurrency int
	Rate        float64 // requests started per second; 0 = no limit
	// AutoRate finds the server's capacity while running: the requests in flight
	// adapt to its latency and 429s, up to Concurrency, instead of a fixed rate
	// (Rate is then ignored). See adaptive.
	AutoRate       bool
	ServerName     string // "" = learn it from the first registration
	DryRun         bool
	RequestTimeout time.Duration // one request; default 60 s
	// RetryBudget is how long one request is retried through 5xx, resets, timeouts
	// and 429s before its user is reported failed; default DefaultRetryBudget.
	RetryBudget time.Duration
	// MaxRetryAfter is the longest Retry-After the run waits out; a server asking
	// for more fails the request at once. Default DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// MaxAttempts, if set, also caps the retries of one request (tests use it).
	MaxAttempts int
	BackoffBase time.Duration // default 250 ms
	BackoffMax  time.Duration // default 30 s
}

// Runner runs one job: Run creates the roster's missing accounts as it streams it;
// Plan and Apply keep a server in line with the roster (the sync features of an
// account system with an admin API). Both go through the same per-user core
// (createAccount), the same request engine and the same journal and handoff.
type Runner struct {
	// Accounts is the account system. nil: SharedSecret{Server, Secret} when Server
	// is set, else SynapseAdmin{API}.
	Accounts Accounts
	// Server is the homeserver's client API (shared-secret registration, login).
	Server Server
	Secret []byte
	// API is an admin API, for Plan and Apply.
	API AdminAPI
	// Sessions logs in and out, to settle whether a password an interrupted run sent
	// took effect; nil: Server's, if any.
	Sessions  Sessions
	Passwords Passwords
	Journal   Journal // nil in a dry run or a plan
	Handoff   Handoff // nil in a dry run or a plan
	Sink      Sink
	// OnRow, if set, sees every row as it is reported (for progress bars).
	OnRow func(report.Row)
	Log   *slog.Logger
	Opts  Options
	// Engine, if set, is the request engine to share (the preflight's); otherwise
	// one is made from Opts.
	Engine *Engine
	// Secrets are blanked out of every server message before it reaches a report row
	// or a log line (the admin token, the shared secret): a server or proxy may quote
	// the request, or its own configuration, in an error. Passwords are blanked out
	// of the answers to the requests that carry them.
	Secrets []string

	// Sync, Self and PageSize are for Plan and Apply: the operator's choices, the
	// admin token's own user ID (never demoted, never deactivated), and the accounts
	// per page of the user list (0 = DefaultPageSize).
	Sync     reconcile.Options
	Self     string
	PageSize int

	// Seams for tests.
	Now    func() time.Time
	Sleep  func(context.Context, time.Duration) error
	Jitter func(n int64) int64 // uniform in [0, n)

	once       sync.Once
	serverName sync.Mutex
	sn         string
	engine     *Engine

	aliasMu sync.Mutex
	aliases map[string]string // alias → room ID ("" = did not resolve)

	failedJoins atomic.Int64
	joinMu      sync.Mutex
	joinErrs    []string // the first few failed joins, for the summary
}

func (r *Runner) defaults() {
	r.once.Do(func() {
		if r.Log == nil {
			r.Log = slog.New(slog.DiscardHandler)
		}
		if r.Now == nil {
			r.Now = time.Now
		}
		if r.Accounts == nil {
			if r.Server != nil {
				r.Accounts = SharedSecret{Server: r.Server, Secret: r.Secret}
			} else if r.API != nil {
				r.Accounts = SynapseAdmin{API: r.API}
			}
		}
		if r.Sessions == nil && r.Server != nil {
			r.Sessions = r.Server
		}
		if len(r.Secret) > 0 {
			r.Secrets = append(r.Secrets, string(r.Secret))
		}
		r.engine = r.Engine
		if r.engine == nil {
			r.engine = &Engine{log: r.Log, secrets: r.Secrets}
			r.engine.setDefaults(r.Opts, r.Now, r.Sleep, r.Jitter)
		}
		// The engine's settings (a shared engine's included), the run's own server
		// name and dry-run flag.
		sn, dry := r.Opts.ServerName, r.Opts.DryRun
		r.Opts = r.engine.Options()
		r.Opts.ServerName, r.Opts.DryRun = sn, dry
		r.sn = sn
		if r.PageSize <= 0 {
			r.PageSize = DefaultPageSize
		}
		r.aliases = map[string]string{}
	})
}

// ServerName is the server name in user IDs, once known.
func (r *Runner) ServerName() string {
	r.serverName.Lock()
	defer r.serverName.Unlock()
	return r.sn
}

func (r *Runner) learnServerName(userID string) {
	if i := strings.IndexByte(userID, ':'); i > 0 {
		r.serverName.Lock()
		if r.sn == "" {
			r.sn = userID[i+1:]
		}
		r.serverName.Unlock()
	}
}

func (r *Runner) userID(localpart string) string {
	if sn := r.ServerName(); sn != "" {
		return "@" + localpart + ":" + sn
	}
	return ""
}

// Run provisions every user of src. Cancelling ctx stops new users from starting;
// requests already sent are allowed to finish (each under its own timeout) so that
// their outcome is journaled and handed off. Users never started are reported as
// skipped and the returned error wraps ErrInterrupted.
func (r *Runner) Run(ctx context.Context, src Source) (*report.Summary, error) {
	r.defaults()
	sum := report.NewSummary(r.Now())
	ord := reportRows(r.Opts.Concurrency, sum, r.OnRow, r.Sink, func(row *report.Row) {
		if row.UserID == "" {
			row.UserID = r.userID(row.Localpart)
		}
	})

	// Requests in flight outlive a cancelled ctx (see above); fatal errors of the run
	// itself cancel everything through the errgroup's context.
	g, gctx := errgroup.WithContext(context.WithoutCancel(ctx))
	g.SetLimit(r.Opts.Concurrency)
	stop := func() bool { return ctx.Err() != nil || gctx.Err() != nil }
	// With --rate auto the pool admits users as the adaptive limit allows (see
	// adaptive.admit); waiting for that ends with the run, however it ends.
	admitCtx, cancelAdmit := context.WithCancel(gctx)
	defer cancelAdmit()
	defer context.AfterFunc(ctx, cancelAdmit)()

	index := 0
	interrupted := false
	srcErr := src(func(u roster.User) error {
		i := index
		index++
		if err := ord.reserve(gctx, i); err != nil {
			return err
		}
		auto := r.engine.writes.conc
		admitted := auto != nil && !stop() && auto.admit(admitCtx) == nil
		if stop() || (auto != nil && !admitted) {
			if admitted {
				auto.leave()
			}
			interrupted = interrupted || ctx.Err() != nil
			return ord.done(i, skippedRow(u, "interrupted before it started: run the same command again to finish"))
		}
		g.Go(func() error {
			if admitted {
				defer auto.leave()
			}
			row, err := r.provision(ctx, gctx, u)
			if err != nil {
				// The run stops; the row still counts, so that the summary and the
				// report hold every user the server may have acted on.
				_ = ord.done(i, stoppedRow(row, u.Localpart, err))
				return err
			}
			return ord.done(i, row)
		})
		return nil
	})
	gErr := g.Wait()
	sum.Finished = r.Now()
	switch {
	case gErr != nil:
		return sum, gErr
	case ord.err != nil:
		return sum, ord.err
	case srcErr != nil:
		return sum, fmt.Errorf("reading the roster: %w", srcErr)
	case interrupted || ctx.Err() != nil:
		return sum, fmt.Errorf("%w: %w", ErrInterrupted, context.Cause(ctx))
	}
	return sum, nil
}

// stoppedRow is the row of a user whose step failed in a way that stops the run (the
// journal or the handoff could not be written): what the server did stands (created
// means created: the password is in the journal, and the next run hands it off), with
// why the run stopped; a user the server had not answered for is failed.
func stoppedRow(row report.Row, localpart string, err error) report.Row {
	if row.Localpart == "" {
		row.Localpart = localpart
	}
	if row.Status == "" {
		row.Status = report.Failed
	}
	row.Error = join(row.Error, "the run stopped here: "+sanitize.Line(err.Error(), 200))
	return row
}

func skippedRow(u roster.User, why string) report.Row {
	return report.Row{Localpart: u.Localpart, Status: report.Skipped, Error: why}
}

// provision takes one user to a final row. stopCtx ends waiting (limiter, backoff);
// reqCtx bounds requests (it ends only when the run itself fails).
func (r *Runner) provision(stopCtx, reqCtx context.Context, u roster.User) (report.Row, error) {
	row := report.Row{Localpart: u.Localpart}
	note := ""
	if u.Original != "" {
		note = fmt.Sprintf("written as %q in the roster; user IDs are lower case", u.Original)
	}
	if r.Opts.DryRun {
		return r.dryRun(stopCtx, reqCtx, u, note), nil
	}

	st := userState{}
	if r.Journal != nil {
		if e, ok := r.Journal.Lookup(u.Localpart); ok {
			switch {
			case e.Done && e.Status == StatusDelivered:
				// Created and handed off by an earlier run: it is simply there now.
				row.UserID, row.Status, row.Error = e.UserID, report.Exists, join(note, "created and handed off by an earlier run of provision")
				return row, nil
			case e.Done && e.Status == journal.StatusCreated:
				// Created by a run that stopped before its handoff was committed:
				// hand the journaled password off again, then record it as created in
				// this run, so that this run's checkpoint covers it.
				if err := r.Handoff.Deliver(u, e.UserID, e.Password, true); err != nil {
					row.UserID, row.Status = e.UserID, report.Created
					return row, fmt.Errorf("handing off %s: %w", e.UserID, err)
				}
				if err := r.outcome(u.Localpart, e.UserID, journal.StatusCreated); err != nil {
					return row, fmt.Errorf("journal: %w", err)
				}
				r.learnServerName(e.UserID)
				row.UserID, row.Status, row.Error = e.UserID, report.Created, join(note, "created by an earlier, interrupted run; its password is in this run's handoff")
				return row, nil
			case e.Done && e.Status == journal.StatusExists:
				row.UserID, row.Status, row.Error = e.UserID, report.Exists, note
				return row, nil
			default:
				// An intent with no outcome, or a failure: the request may have
				// reached the server. Resolve it with the same password.
				st.resumed = true
				if e.Password != "" {
					st.password = e.Password
					st.maybeLanded = true
					st.journaled = true
					st.again = true
				}
			}
		}
	}

	out, err := r.createAccount(stopCtx, reqCtx, u, &st)
	row.Attempts = st.attempts
	row.UserID = out.userID
	row.Status = out.status
	row.Errcode = out.errcode
	row.Error = join(note, scrub(out.message, st.password))
	return row, err
}

type userState struct {
	password    string
	journaled   bool // the password is in the journal (an intent)
	again       bool // ... from an earlier run, which may have handed it off already
	maybeLanded bool // an earlier attempt (or run) may have created the account
	resumed     bool // the journal holds an unsettled intent for this user (Requests.Resumed)
	attempts    int
}

type outcome struct {
	status           report.Status
	userID           string
	errcode, message string
	unknown          bool // failed, and whether the account was created is unknown
}

// created checks the user ID the server says it created: it must be the one asked
// for. A missing or different one (a hostile or broken server, a proxy answering for
// another) is a failed user whose outcome is unknown: the next run logs in with the
// journaled password to learn the truth, and no text of the server's reaches a file.
func (r *Runner) created(u roster.User, userID string) outcome {
	if err := CheckUserID(userID, u.Localpart, r.ServerName()); err != nil {
		return outcome{status: report.Failed, errcode: "", message: err.Error(), unknown: true}
	}
	return outcome{status: report.Created, userID: userID}
}

// checkLanded logs in with the password this run (or an interrupted one) sent. Success
// means the account is ours: created, not merely existing. ok is false when the
// question could not be settled; the caller then registers, which is safe because
// shared-secret registration never changes an existing account.
func (r *Runner) checkLanded(stopCtx, reqCtx context.Context, u roster.User, st *userState) (outcome, bool) {
	userID, live, known, err := passwordLive(stopCtx, reqCtx, r.engine, r.Sessions, u.Localpart, st.password, r.Log)
	if errors.Is(err, ErrInterrupted) {
		return interruptedOutcome(st), true
	}
	if !known {
		return outcome{}, false
	}
	st.maybeLanded = false
	if !live {
		return outcome{}, false // wrong password or no such user: our request did not create it
	}
	if userID == "" {
		userID = r.userID(u.Localpart)
	}
	return r.created(u, userID), true
}

// passwordLive logs in with password through the engine: known is false when the
// question could not be settled (the server did not answer, or does not allow
// password logins). The session it opens is logged out at once.
func passwordLive(stopCtx, reqCtx context.Context, e *Engine, s Sessions, localpart, password string, log *slog.Logger) (userID string, live, known bool, err error) {
	if s == nil {
		return "", false, false, nil
	}
	var sess matrix.Session
	err = e.Do(stopCtx, reqCtx, &Call{Password: password}, func(ctx context.Context) error {
		var err error
		sess, err = s.LoginSession(ctx, localpart, password)
		return err
	})
	switch {
	case err == nil:
		// Through the engine too: a logout that times out is retried, so that no
		// session is left open on an account the run resolved. It is sent even when
		// the run is being interrupted (stopCtx is not the one it waits on).
		if lerr := e.Do(reqCtx, reqCtx, &Call{Password: sess.AccessToken}, func(ctx context.Context) error {
			return s.Logout(ctx, sess.AccessToken)
		}); lerr != nil {
			log.Warn("could not log out the session opened to check an account", "user", localpart, "error", lerr.Error())
		}
		return sess.UserID, true, true, nil
	case errors.Is(err, ErrInterrupted):
		return "", false, false, err
	case matrix.Errcode(err) == matrix.ErrcodeForbidden, matrix.Errcode(err) == matrix.ErrcodeUserDeactivated:
		return "", false, true, nil // wrong password, or no password any more
	}
	return "", false, false, nil
}

func interruptedOutcome(st *userState) outcome {
	msg := "interrupted before it finished: run the same command again to finish"
	if st.maybeLanded {
		msg = "interrupted while the server's answer was unknown: run the same command again, which will find out"
	}
	return outcome{status: report.Skipped, message: msg}
}

func failedOutcome(err error, prefix string) outcome {
	o := outcome{status: report.Failed}
	o.errcode, o.message = errText(err)
	if prefix != "" {
		o.message = prefix + ": " + o.message
	}
	return o
}

func (r *Runner) dryRun(stopCtx, reqCtx context.Context, u roster.User, note string) report.Row {
	row := report.Row{Localpart: u.Localpart}
	var av matrix.Availability
	err := r.engine.Do(stopCtx, reqCtx, &Call{}, func(ctx context.Context) error {
		var err error
		av, err = r.Server.UsernameAvailable(ctx, u.Localpart)
		return err
	})
	row.Attempts = 0 // nothing that changes state was sent
	switch {
	case errors.Is(err, ErrInterrupted):
		return skippedRow(u, "interrupted before it started")
	case err != nil:
		o := failedOutcome(err, "checking whether it exists")
		row.Status, row.Errcode, row.Error = report.Failed, o.errcode, join(note, o.message)
	case av == matrix.Taken:
		row.Status, row.Error = report.Exists, note
	case av == matrix.Available:
		row.Status, row.Error = report.Skipped, join(note, "dry run: would be created")
	default:
		row.Status, row.Error = report.Skipped, join(note, "dry run: would be created unless it exists; this server does not tell whether it exists while public registration is off")
	}
	return row
}

// scrub removes a password from a server's message: no server should echo one, but a
// report must not hold it even if one does.
//
// A server that quotes the request quotes it as JSON: a password with < > & " or \
// then appears escaped (\u003c, \"), so every form JSON and Go quoting give it is
// blanked out too.
func scrub(msg, password string) string {
	if password == "" || msg == "" {
		return msg
	}
	for _, form := range passwordForms(password) {
		msg = strings.ReplaceAll(msg, form, "[REDACTED]")
	}
	return msg
}

// passwordForms are the ways a password can appear inside a server's message: as
// it is, escaped as a JSON string (with and without HTML escaping, as Go's encoder and
// others write it), and Go-quoted.
func passwordForms(pw string) []string {
	forms := []string{pw}
	add := func(f string) {
		if f != "" && !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(pw)
	add(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(b.String()), `"`), `"`))
	if j, err := json.Marshal(pw); err == nil {
		add(strings.TrimSuffix(strings.TrimPrefix(string(j), `"`), `"`))
	}
	q := strconv.Quote(pw)
	add(q[1 : len(q)-1])
	// Longest first, so that a shorter form never leaves part of a longer one.
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	return forms
}

// scrubError blanks the password and the shared secret out of the server's message in
// err, in place, so that the report row made from it holds neither (a server or proxy
// may quote the request, or its own config, in an error).
func scrubError(err error, secrets ...string) {
	var merr *matrix.Error
	if !errors.As(err, &merr) {
		return
	}
	for _, s := range secrets {
		merr.Message = scrub(merr.Message, s)
	}
}

// errorText renders err, after scrubError, for a log line. A server's answer is
// rendered afresh from the *matrix.Error rather than taken from err.Error(): that was
// rendered when the error was wrapped, before scrubError, and keeps only the start of
// a long message, so a secret cut in two at its end could no longer be blanked out.
func errorText(err error, password string) string {
	var merr *matrix.Error
	if errors.As(err, &merr) {
		return merr.Error()
	}
	return scrub(err.Error(), password)
}

func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// errText is an error as a report shows it: the server's errcode and message (after
// how long it was tried, if it was retried), or the error itself.
func errText(err error) (string, string) {
	var merr *matrix.Error
	if !errors.As(err, &merr) {
		return "", sanitize.Line(err.Error(), 0) // no server text in it: a network error, an interruption
	}
	msg := merr.Message
	if msg == "" {
		msg = fmt.Sprintf("HTTP %d", merr.Status)
	}
	var ex *ExhaustedError
	if errors.As(err, &ex) {
		msg = fmt.Sprintf("gave up after %d tries: %s", ex.Attempts, msg)
	}
	var wt *WaitTooLongError
	if errors.As(err, &wt) {
		msg = fmt.Sprintf("the server asked to wait %s, longer than --max-retry-after %s: %s", wt.Wait.Round(time.Second), wt.Max, msg)
	}
	return merr.Errcode, sanitize.Line(msg, 0)
}
