package main

import (
	"github.com/provision-matrix/provision/internal/redact"

	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/provision-matrix/provision/internal/batch"
	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/directory"
	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/mas"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/pipeline"
	"github.com/provision-matrix/provision/internal/reconcile"
	"github.com/provision-matrix/provision/internal/report"
	"github.com/provision-matrix/provision/internal/roster"
)

// Exit codes. They are part of provision's interface: cron jobs and scripts branch on
// them, so they never change meaning.
const (
	ExitOK          = 0   // every user is created or was already there
	ExitFailed      = 1   // some users failed, or the server could not be used; see the report
	ExitUsage       = 2   // bad flags, configuration or roster: nothing was sent
	ExitLocked      = 3   // another provision run holds the journal's lock
	ExitInterrupted = 130 // stopped by Ctrl-C or SIGTERM; run the same command again to resume
)

// This file is the one place where an error becomes an exit code and advice. The
// library packages say what failed, with typed errors and sentinels; the CLI adds
// what to do about it here, once, by type and never by the error's text.

// exitCoder is an error that knows its exit code.
type exitCoder interface{ ExitCode() int }

// cliError is an error with its exit code and the advice shown under it.
type cliError struct {
	code int
	err  error
	hint string
}

func (e *cliError) Error() string {
	if e.hint == "" {
		return e.err.Error()
	}
	return e.err.Error() + "\n  hint: " + e.hint
}
func (e *cliError) Unwrap() error { return e.err }
func (e *cliError) ExitCode() int { return e.code }

// usage is a mistake in how provision was called, its configuration or roster: exit
// 2, nothing was sent.
func usage(err error, hint string) error { return &cliError{code: ExitUsage, err: err, hint: hint} }

// failed is a run that could not do its work: exit 1.
func failed(err error, hint string) error { return &cliError{code: ExitFailed, err: err, hint: hint} }

// usageError is a mistake in how provision was called, with any hint already in it.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
func (e usageError) ExitCode() int { return ExitUsage }

// silentError carries an exit code for an outcome that has already been explained on
// stderr (the summary of a run with failures, for example).
type silentError struct{ code int }

func (e *silentError) Error() string { return fmt.Sprintf("exit %d", e.code) }
func (e *silentError) ExitCode() int { return e.code }

// redactedError is an error whose text has the run's secrets blanked out: a server
// that echoes a token or the secret in an error body must not get it printed on the
// last line of stderr, whichever path the error took.
type redactedError struct {
	err error
	set *redact.Set
}

func (e redactedError) Error() string { return e.set.Redact(e.err.Error()) }
func (e redactedError) Unwrap() error { return e.err }
func (e redactedError) ExitCode() int { return codeOf(e.err) }

func redacted(err error, set *redact.Set) error {
	var silent *silentError
	if err == nil || errors.As(err, &silent) {
		return err
	}
	return redactedError{err, set}
}

// configError is a configuration that could not be loaded: a config.Error is a
// usage error (exit 2).
func configError(err error) error {
	if errors.As(err, new(*config.Error)) {
		return usageError{err}
	}
	return err
}

// secretsOf is the set of cfg's secrets, to blank out of everything shown.
func secretsOf(cfg *config.Config) *redact.Set {
	secrets := &redact.Set{}
	for _, s := range cfg.Secrets() {
		secrets.Add(string(s))
	}
	return secrets
}

// codeOf is the exit code err ends the process with.
func codeOf(err error) int {
	if err == nil {
		return ExitOK
	}
	var ec exitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	if errors.Is(err, context.Canceled) {
		return ExitInterrupted
	}
	return ExitFailed
}

// explain turns an error of the pipeline into what the operator reads: the exit code
// and the advice for what went wrong. what names the step ("" = the error says it).
func explain(cfg *config.Config, err error) error {
	if err == nil {
		return nil
	}
	var ec exitCoder
	if errors.As(err, &ec) {
		return err // explained already
	}
	var (
		re *roster.Errors
		ce *config.Error
		le *reconcile.LimitError
		co *journal.CorruptError
		ex *batch.ExhaustedError
		wt *batch.WaitTooLongError
		de *directory.Error
		se *pipeline.StopError
		rs *pipeline.RosterSizeError
		pe *pipeline.ProviderError
	)
	switch {
	// The pipeline's own errors first: their kind decides, whatever they wrap.
	case errors.As(err, &se):
		return failed(err, stopHint(se))
	case errors.As(err, &rs):
		if rs.Min > 0 {
			return usage(err, "an empty or truncated roster would deactivate everyone; check the export or the directory search, or lower --min-roster if this is right")
		}
		return usage(err, fmt.Sprintf("a search with the wrong base or filter, or an expired account, looks like this; check it with provision plan.\n"+
			"        If so many people really left, run once with --min-roster-ratio 0 (the count in %s is then updated)", rs.Path))
	case errors.As(err, &pe):
		if len(pe.Known) == 0 {
			return usage(err, "MAS has no upstream provider: configure one under upstream_oauth2.providers in MAS's config")
		}
		return usage(err, "sso_provider (or --sso-provider) takes a provider's ID or its human name; MAS has: "+strings.Join(pe.Known, ", "))
	case errors.Is(err, pipeline.ErrInvalid):
		return usage(err, "")
	case errors.Is(err, pipeline.ErrUnreachable):
		return failed(err, "check --homeserver: it is the URL clients use (the one in Element's login screen), e.g. https://matrix.example.org")
	case errors.Is(err, pipeline.ErrMASUnreachable):
		return failed(err, "--mas is MAS's base URL (the listener with the oauth and adminapi resources), e.g. https://auth.example.org; see docs/mas.md")
	case errors.As(err, new(*pipeline.Error)):
		return usage(err, kindHints[kindOf(err)])
	case errors.As(err, &re):
		n := re.Total
		return &cliError{code: ExitUsage, err: fmt.Errorf("the roster has %d problem%s; nothing was sent to the server:\n%s", n, plural(n), re.Error())}
	case errors.As(err, &ce):
		return usageError{err}
	case errors.As(err, &de):
		return directoryError(de)
	case errors.Is(err, roster.ErrChanged):
		return usage(err, "something rewrote the roster while provision ran: let the export finish first (write it to a new file and rename it into place), then run again")
	case errors.Is(err, roster.ErrTooLarge):
		return usage(err, "save it to a file and pass the file's name")
	case errors.Is(err, journal.ErrLocked):
		return &cliError{code: ExitLocked, err: err, hint: "another provision run against this server is still working (cron runs that overlap); try again when it has finished"}
	case errors.Is(err, journal.ErrWrongKey):
		return usage(err, "the journal's key file is missing or not the one it was written with; restore it from where the journal came from, or, if every password in it was handed off, start over with --fresh")
	case errors.Is(err, journal.ErrOtherHomeserver):
		return usage(err, "use the same --homeserver as the run that wrote the journal, or name another journal with --journal")
	case errors.Is(err, journal.ErrUndelivered):
		return usage(err, "hand those passwords off first: provision recover --recipient KEY (with the same --homeserver), then --fresh")
	case errors.Is(err, journal.ErrNotJournal), errors.Is(err, journal.ErrUnsupportedVersion):
		return usage(err, "--journal names a file that is not a journal of this provision version: name another file, or let provision keep it in --state-dir")
	case errors.Is(err, journal.ErrFull):
		return failed(err, "free some space on the journal's disk, then run the same command again: nothing is lost")
	case errors.As(err, &co):
		return usage(err, "restore the journal from a backup, or start a new one with --fresh (the damaged one is kept)")
	case errors.Is(err, matrix.ErrCAFile):
		return usage(err, "--ca-file takes a PEM file of CA certificates (-----BEGIN CERTIFICATE-----), e.g. your private CA's ca.crt")
	case errors.Is(err, matrix.ErrNoAdminAPI):
		return usage(fmt.Errorf("the server at %s has no Synapse admin API, which the admin-token mode needs: nothing was sent", cfg.Homeserver),
			"Dendrite has no such API: create accounts there with the shared-secret mode instead\n"+
				"        (--shared-secret-file FILE holding registration_shared_secret from dendrite.yaml; it creates accounts but never updates or deactivates them).\n"+
				"        If this is Synapse, make the reverse proxy forward /_synapse/admin to it")
	case errors.Is(err, matrix.ErrBadToken):
		return usage(fmt.Errorf("the server does not accept the admin token from %s: nothing was changed", cfg.AdminTokenSource),
			"the token is unknown, expired or logged out: log in as the admin again and save the new access token")
	case errors.Is(err, matrix.ErrNotAdmin):
		return usage(fmt.Errorf("the admin token from %s belongs to a user who is not a server admin: nothing was changed", cfg.AdminTokenSource),
			"use the access token of a server admin (e.g. one created with register_new_matrix_user --admin)")
	case errors.Is(err, matrix.ErrSharedSecretMismatch):
		return usage(err, fmt.Sprintf("the secret from %s is not the one in the server's config (registration_shared_secret)", cfg.SharedSecretSource))
	case errors.Is(err, pipeline.ErrDelegated):
		return usage(fmt.Errorf("%w: nothing was sent", err),
			"accounts on this server live in MAS: provision them through MAS's admin API with\n"+
				"        --mas URL (MAS's base URL, often the issuer above) --mas-client-id ID --mas-client-secret-file FILE;\n"+
				"        docs/mas.md says how to register provision as a MAS client")
	case errors.Is(err, mas.ErrBadClient), errors.Is(err, mas.ErrNotAdminClient), errors.Is(err, mas.ErrUnauthorized):
		return usage(fmt.Errorf("%w: nothing was sent", err),
			"MAS must know provision as a client (clients: with client_auth_method: client_secret_basic) listed under policy.data.admin_clients; see docs/mas.md")
	case errors.Is(err, mas.ErrNoAdminAPI), errors.Is(err, mas.ErrNoTokenEndpoint):
		return usage(fmt.Errorf("--mas %s: %w: nothing was sent", cfg.MAS, err),
			"--mas is the base URL of a MAS listener that serves both the oauth and the adminapi resources; see docs/mas.md, step 3")
	case errors.As(err, &le):
		return usage(fmt.Errorf("refusing to deactivate %d accounts, more than --max-deactivate %d: nothing was changed", le.Count, le.Max),
			fmt.Sprintf("check the roster first (a truncated or empty export does this); `provision plan` with the same flags lists who would go;\n"+
				"        if that is right, run again with --max-deactivate %d", le.Count))
	case errors.As(err, &wt):
		return failed(err, "the server (or a proxy in front of it) is rate limiting hard; run again later, or raise --max-retry-after if waiting that long is fine")
	case errors.As(err, &ex):
		return failed(err, "the server kept failing; check that it is up (and its log), then run the same command again: nothing is lost")
	case errors.Is(err, fs.ErrExist):
		return usage(err, "move it away, or choose another path")
	}
	return failed(err, "")
}

// kindHints is the advice for each kind of pipeline.Error that is a usage error (exit 2).
var kindHints = map[error]string{
	pipeline.ErrRosterUnreadable: "name a .csv or .yaml file",
	pipeline.ErrNoRecipient: "make a key with `age-keygen -o key.txt` and pass its public key (age1...) with --recipient,\n" +
		"        or pass an SSH public key (--recipient \"$(cat ~/.ssh/id_ed25519.pub)\"),\n" +
		"        or, if you must, --plaintext-credentials (the file is then readable by anyone who can read it, mode 0600)",
	pipeline.ErrSameFile:          "give each output a file of its own: a report written over the credentials would destroy every password in them",
	pipeline.ErrNotWritable:       "create the directory or make it writable, or choose another path",
	pipeline.ErrStateDir:          "choose another place with --state-dir, or name the journal with --journal",
	pipeline.ErrHandoffDir:        "choose another directory for the users' welcome files",
	pipeline.ErrNoServerName:      "pass --server-name",
	pipeline.ErrJournalKeyDamaged: "restore it from a backup of the state directory",
	pipeline.ErrRosterCount:       "it is provision's record of the last roster size: delete it (the next completed run writes it again)",
	pipeline.ErrUserIDTooLong:     "shorten the attribute the localpart comes from, or map another one with --ldap-map",
	pipeline.ErrResetWithMAS:      "reset a password in MAS itself (mas-cli manage set-password USER PASSWORD), or drop --reset-passwords",
	pipeline.ErrRoomsNeedAdmin: "give provision a Synapse admin's access token with --admin-token-file FILE (on a server that delegates to MAS, one made with\n" +
		"        mas-cli manage issue-compatibility-token ADMIN-USER --yes-i-want-to-grant-synapse-admin-privileges), or remove the rooms column",
	pipeline.ErrMASClient:     "see docs/mas.md for the client ID and secret MAS needs",
	pipeline.ErrMASServerName: "drop --server-name, or point --mas at this server's MAS",
	pipeline.ErrMASPasswords:  "people log in through an upstream provider here: give every roster user an sso_provider and sso_subject (or --sso-provider), see docs/migrating.md",
	pipeline.ErrNoJournal:     "name the journal with --journal FILE, or the state directory the runs used with --state-dir",
	pipeline.ErrManyJournals:  "name the server with --server-name (the part after ':' in its user IDs), or the journal with --journal",
}

// kindOf is the kind of the outermost pipeline.Error in err.
func kindOf(err error) error {
	var pe *pipeline.Error
	if errors.As(err, &pe) {
		return pe.Kind
	}
	return nil
}

// stopHint is the advice for a run that stopped after it started.
func stopHint(se *pipeline.StopError) string {
	switch se.Kind {
	case pipeline.StopTimeout:
		return "run the same command again to finish; it resumes from the journal"
	case pipeline.StopPlanTimeout:
		return "raise --timeout, or lower --concurrency if the server is struggling"
	case pipeline.StopPlanFailed:
		return "run the same command again later; if it keeps failing, see the server's log"
	case pipeline.StopFailed:
		return "nothing is lost: every password sent is in the journal " + se.Journal + "; fix the cause and run the same command again"
	case pipeline.StopJoins:
		return "the admin must be in a room (with the power to invite, if it is not public) to join others to it; fix that and run again with --update to retry the joins"
	}
	return ""
}

// directoryError explains a directory that could not be read: the search is all or
// nothing, so nothing was sent to the homeserver, and the exit code is 2 whatever the
// cause, so that a nightly job's failure is never mistaken for a sync that ran.
func directoryError(de *directory.Error) error {
	msg := de.Msg
	if de.Cause != nil {
		msg += ": " + de.Cause.Error()
	}
	what := map[error]string{
		directory.ErrBind:        "the directory refused the service account",
		directory.ErrTLS:         "no trusted TLS connection to the directory",
		directory.ErrUnreachable: "cannot reach the directory",
		directory.ErrEmptyResult: "the directory search found nobody",
		directory.ErrSizeLimit:   "the directory cut the search short",
		directory.ErrInsecure:    "refusing a clear-text connection to the directory",
		directory.ErrNoMemberOf:  "the directory gives no group memberships",
	}[de.Kind]
	if what == "" {
		what = "reading the directory failed"
	}
	hint := de.Hint
	if hint == "" {
		hint = "fix the cause and run the same command again"
	}
	hint = strings.TrimSuffix(strings.TrimSuffix(hint, "; nothing was changed"), ", nothing was changed")
	return &cliError{code: ExitUsage, err: fmt.Errorf("%s (%s): nothing was changed on the homeserver", what, msg), hint: hint}
}

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

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
