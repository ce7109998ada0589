package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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
)

// maxPlanLines bounds how much of the plan an applying run prints on stderr; `provision
// plan` prints all of it.
const maxPlanLines = 100

// runAdmin is the admin-token mode: it keeps the server in line with the roster
// through Synapse's admin API. It checks the roster offline, takes the journal's lock
// (so that two scheduled runs never overlap, from the plan to the last change), reads
// the server into a plan, stops if the plan deactivates more than --max-deactivate
// accounts, and then carries the plan out. A dry run (and `provision plan`) prints the
// plan on stdout and changes nothing; it takes no lock, but refuses to run while an
// applying run holds it, whose changes would make the plan wrong at once.
//
// When both a shared secret and an admin token are configured, the admin token wins:
// it can do everything the secret can, and more. The caller has made ui.
func runAdmin(ctx context.Context, cfg *config.Config, stdin io.Reader, stdout io.Writer, ui *ui) (*report.Summary, error) {
	log := ui.log
	if cfg.SharedSecret != nil {
		log.Info("both a shared secret and an admin token are configured: using the admin token (Synapse admin API)")
	}

	// 1. The roster, offline.
	cr, err := checkRoster(cfg, stdin, log)
	if err != nil {
		return nil, err
	}
	src, ropts, localPolicy, withRecipient := cr.src, cr.opts, cr.policy, cr.withRecipient

	// 2. Recipients and the lock, before any request.
	var rcpts []age.Recipient
	var jr *journal.Journal
	if cfg.DryRun {
		busy, err := journalBusy(cfg.Journal)
		if err != nil {
			log.Debug("could not check the journal's lock", "journal", cfg.Journal, "error", err.Error())
		}
		if busy {
			return nil, lockedError{fmt.Errorf("journal %s: %w: a run is changing the server right now; plan again when it has finished", cfg.Journal, journal.ErrLocked)}
		}
	} else {
		if rcpts, err = operatorRecipients(cfg); err != nil {
			return nil, err
		}
		if err := checkOutputs(cfg, withRecipient); err != nil {
			return nil, err
		}
		jr, err = journal.Open(cfg.Journal, journal.DeriveKey(cfg.AdminToken), journal.Options{Fresh: cfg.Fresh, Homeserver: cfg.Homeserver, SyncWindow: -1})
		if err != nil {
			if errors.Is(err, journal.ErrWrongKey) {
				return nil, usageError{fmt.Errorf("%w\n  hint: admin tokens change when the admin logs in again. If the last run finished (its report shows nothing skipped), start a new journal with --fresh (the old one is kept); if it was interrupted, finish it once with the old token", err)}
			}
			return nil, journalError(cfg, err)
		}
		defer jr.Close()
		if prev := jr.Previous(); prev != "" {
			log.Info("started a new journal; the old one is kept", "old", prev)
		}
	}

	// 3. The server: the admin API, the token, the server name, the password policy.
	client, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	admin := client.Admin(cfg.AdminToken)
	self, serverName, policy, err := adminPreflight(ctx, client, admin, cfg, localPolicy, ui)
	if err != nil {
		return nil, err
	}
	if policy != localPolicy {
		// The server's policy is stricter: supplied passwords must meet it too.
		ropts.CheckPassword = policy.Check
	}
	if ropts.ServerName == "" || policy != localPolicy {
		ropts.ServerName = serverName
		if _, err := src.check(ropts); err != nil {
			return nil, err
		}
	}
	gen, err := password.NewGenerator(cfg.PasswordLength, policy, nil)
	if err != nil {
		return nil, usageError{fmt.Errorf("--password-length %d: %w", cfg.PasswordLength, err)}
	}

	runner := &batch.Runner{
		API:       admin,
		Sessions:  client,
		Passwords: gen,
		Log:       log,
		Opts: batch.Options{
			Concurrency:    cfg.Concurrency,
			Rate:           cfg.Rate,
			ServerName:     serverName,
			RequestTimeout: cfg.RequestTimeout,
		},
		Sync: reconcile.Options{
			Update:            cfg.Update,
			DeactivateMissing: cfg.DeactivateMissing,
			Erase:             cfg.Erase,
			MaxDeactivate:     cfg.MaxDeactivate,
			ResetPasswords:    cfg.ResetPasswords,
			LogoutDevices:     cfg.LogoutDevices,
		},
		Self:    self,
		Secrets: []string{string(cfg.AdminToken), string(cfg.SharedSecret)},
	}
	if jr != nil {
		// Only an applying run settles what an interrupted one left: the plan then
		// also compares the rooms of accounts it may have created.
		runner.Journal = jr
	}

	// 4. The plan: reads only.
	plan, err := runner.Plan(ctx, func(yield func(roster.User) error) error { return src.each(ropts, yield) })
	if err != nil {
		return nil, planError(ctx, cfg, err)
	}
	limitErr := plan.CheckLimit()
	if cfg.DryRun {
		if err := plan.WriteText(stdout); err != nil {
			return nil, fmt.Errorf("writing the plan: %w", err)
		}
		if limitErr != nil {
			ui.info(fmt.Sprintf("WARNING: run for real, this plan would stop before changing anything: %v (--max-deactivate %d)", limitErr, cfg.MaxDeactivate))
		}
		return nil, nil
	}
	printPlan(plan, ui)
	if limitErr != nil {
		var le *reconcile.LimitError
		errors.As(limitErr, &le)
		return nil, usageError{fmt.Errorf("refusing to deactivate %d accounts, more than --max-deactivate %d: nothing was changed\n"+
			"  hint: check the roster first (a truncated or empty export does this); `provision plan` with the same flags lists who would go;\n"+
			"        if that is right, run again with --max-deactivate %d", le.Count, le.Max, le.Count)}
	}

	// 5. Apply.
	rep, err := openReport(cfg.Report, stdout)
	if err != nil {
		return nil, err
	}
	defer rep.abort()
	creds, err := handoff.CreateCredentials(cfg.Credentials, rcpts, handoff.CredentialsOptions{Plaintext: cfg.Plaintext, Overwrite: cfg.Force})
	if err != nil {
		return nil, usageError{fmt.Errorf("credentials file: %w", err)}
	}
	defer creds.Abort()
	ho := &delivery{creds: creds, homeserver: cfg.Homeserver, handoffDir: cfg.HandoffDir, operatorCopy: cfg.OperatorCopy, force: cfg.Force}
	runner.Handoff = ho
	runner.Sink = rep.w
	runner.OnRow = ui.row

	ui.start(len(plan.Changes), cfg)
	sum, runErr := runner.Apply(ctx, plan)
	ui.stop()

	finishErr := finishHandoff(cfg, creds, jr, ho, runErr, ui)
	if err := rep.commit(); err != nil && finishErr == nil {
		finishErr = fmt.Errorf("writing the report: %w", err)
	}
	ui.summary(sum, cfg)

	switch {
	case runErr != nil && errors.Is(runErr, batch.ErrInterrupted):
		if errors.Is(context.Cause(ctx), context.DeadlineExceeded) || strings.Contains(fmt.Sprint(context.Cause(ctx)), "--timeout") {
			return sum, failure{err: runErr, hint: "run the same command again to finish; it resumes from the journal"}
		}
		return sum, &silentError{code: ExitInterrupted}
	case runErr != nil:
		return sum, failure{err: adminRunError(cfg, runErr), hint: "nothing is lost: every password sent is in the journal " + cfg.Journal + "; fix the cause and run the same command again"}
	case finishErr != nil:
		return sum, failure{err: finishErr}
	case sum.Counts[report.Failed] > 0:
		return sum, &silentError{code: ExitFailed}
	case runner.FailedJoins() > 0:
		n := runner.FailedJoins()
		list := strings.Join(runner.FailedJoinErrors(), "\n    ")
		if more := n - len(runner.FailedJoinErrors()); more > 0 {
			list += fmt.Sprintf("\n    ... and %d more: see the report", more)
		}
		return sum, failure{err: fmt.Errorf("%d room join%s failed (the accounts themselves are fine; the report has each on its row):\n    %s", n, plural(n), list),
			hint: "the admin must be in a room (with the power to invite, if it is not public) to join others to it; fix that and run again with --update to retry the joins"}
	}
	return sum, nil
}

// adminPreflight checks, reading only, that the server has the Synapse admin API and
// that the token is a server admin's; it returns the token's user ID, the server name
// and the password policy to generate passwords under.
func adminPreflight(ctx context.Context, c *matrix.Client, a *matrix.Admin, cfg *config.Config, local password.Policy, ui *ui) (self, serverName string, policy password.Policy, err error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	if _, err := c.Versions(ctx); err != nil {
		return "", "", local, failure{err: fmt.Errorf("no Matrix homeserver answers at %s: %w", cfg.Homeserver, err),
			hint: "check --homeserver: it is the URL clients use (the one in Element's login screen), e.g. https://matrix.example.org"}
	}
	if err := a.Probe(ctx); err != nil {
		return "", "", local, adminRunError(cfg, err)
	}
	self, err = a.WhoAmI(ctx)
	if err != nil {
		return "", "", local, adminRunError(cfg, err)
	}
	serverName = cfg.ServerName
	if _, sn, ok := strings.Cut(self, ":"); ok && serverName == "" {
		serverName = sn
	}
	if serverName == "" {
		return "", "", local, usageError{fmt.Errorf("cannot tell the server name from the admin token's user %q: pass --server-name", self)}
	}
	return self, serverName, serverPolicy(ctx, c, local, ui.log), nil
}

// adminRunError says what to do about an error of the admin API. Configuration
// problems (no admin API, a bad or non-admin token) are usage errors: nothing was
// changed, and running again will not help until the configuration is fixed.
func adminRunError(cfg *config.Config, err error) error {
	switch {
	case errors.Is(err, matrix.ErrNoAdminAPI):
		return usageError{fmt.Errorf("the server at %s has no Synapse admin API, which the admin-token mode needs: nothing was sent\n"+
			"  hint: Dendrite has no such API: create accounts there with the shared-secret mode instead\n"+
			"        (--shared-secret-file FILE holding registration_shared_secret from dendrite.yaml; it creates accounts but never updates or deactivates them).\n"+
			"        If this is Synapse, make the reverse proxy forward /_synapse/admin to it", cfg.Homeserver)}
	case errors.Is(err, matrix.ErrBadToken):
		return usageError{fmt.Errorf("the server does not accept the admin token from %s: nothing was changed\n"+
			"  hint: the token is unknown, expired or logged out: log in as the admin again and save the new access token", cfg.AdminTokenSource)}
	case errors.Is(err, matrix.ErrNotAdmin):
		return usageError{fmt.Errorf("the admin token from %s belongs to a user who is not a server admin: nothing was changed\n"+
			"  hint: use the access token of a server admin (e.g. one created with register_new_matrix_user --admin)", cfg.AdminTokenSource)}
	case errors.Is(err, batch.ErrInterrupted):
		return &silentError{code: ExitInterrupted}
	}
	var le *reconcile.LimitError
	if errors.As(err, &le) {
		return usageError{err}
	}
	return err
}

// planError explains why the plan could not be made; nothing was changed.
func planError(ctx context.Context, cfg *config.Config, err error) error {
	if errors.Is(err, batch.ErrInterrupted) && strings.Contains(fmt.Sprint(context.Cause(ctx)), "--timeout") {
		return failure{err: fmt.Errorf("%w: nothing was changed", err), hint: "raise --timeout, or lower --concurrency if the server is struggling"}
	}
	err = adminRunError(cfg, err)
	var ec exitCoder
	if errors.As(err, &ec) {
		return err
	}
	return failure{err: fmt.Errorf("reading the server's accounts: %w: nothing was changed", err),
		hint: "run the same command again later; if it keeps failing, see the server's log"}
}

// printPlan shows an applying run's plan on stderr, as an audit trail in cron mail
// and journald; `provision plan` is the way to read a long one.
func printPlan(p *reconcile.Plan, ui *ui) {
	lines := p.Lines()
	for i, l := range lines {
		if i == maxPlanLines {
			ui.info(fmt.Sprintf("... and %d more changes (provision plan lists them all)", len(lines)-maxPlanLines))
			break
		}
		ui.info(l)
	}
	ui.info("plan: " + p.Summary())
}
