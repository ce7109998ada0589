package pipeline

import (
	"errors"
	"fmt"
)

// The pipeline says what failed and never what to do about it, nor with which exit
// code: cmd/provision's errors.go adds both, by kind. An error the pipeline makes
// itself is an *Error of one of the kinds below (errors.Is(err, ErrNoRecipient)), or
// one of the typed errors after them; errors of the packages it calls pass through
// with their own types and sentinels.

// Error is an error of the pipeline with its kind. Its text is Err's alone: the kind
// only says what the CLI should advise.
type Error struct {
	Kind error // one of the Err* kinds of this package
	Err  error
}

func (e *Error) Error() string   { return e.Err.Error() }
func (e *Error) Unwrap() []error { return []error{e.Err, e.Kind} }

func kind(k, err error) error { return &Error{Kind: k, Err: err} }

// Kinds of *Error. Unless said otherwise nothing was sent to the server.
var (
	// ErrInvalid: a flag, a configuration value, the roster or a file it names cannot
	// be used, and the error says all there is to say.
	ErrInvalid = errors.New("invalid input")
	// ErrRosterUnreadable: the roster file cannot be opened or read.
	ErrRosterUnreadable = errors.New("the roster cannot be read")
	// ErrNoRecipient: no recipient for the credentials file, and no --plaintext-credentials.
	ErrNoRecipient = errors.New("no recipient for the credentials file")
	// ErrSameFile: two outputs (or an output and an input) are one file.
	ErrSameFile = errors.New("two outputs are one file")
	// ErrNotWritable: an output's directory is missing or not writable.
	ErrNotWritable = errors.New("an output cannot be written")
	// ErrStateDir: the state directory cannot be made.
	ErrStateDir = errors.New("the state directory cannot be made")
	// ErrHandoffDir: the handoff directory cannot be made.
	ErrHandoffDir = errors.New("the handoff directory cannot be made")
	// ErrUnreachable: no Matrix homeserver answers at the URL (exit 1 in the CLI).
	ErrUnreachable = errors.New("no Matrix homeserver answers")
	// ErrNoServerName: the server name cannot be learned from the server.
	ErrNoServerName = errors.New("the server name is not known")
	// ErrJournalKeyDamaged: the journal's key file has the wrong size.
	ErrJournalKeyDamaged = errors.New("the journal key is damaged")
	// ErrRosterCount: the file of the last roster size holds no number.
	ErrRosterCount = errors.New("the last roster size is unreadable")
	// ErrUserIDTooLong: a directory person's user ID is longer than 255 bytes.
	ErrUserIDTooLong = errors.New("a user ID is too long")
	// ErrResetWithMAS: --reset-passwords asked of MAS mode.
	ErrResetWithMAS = errors.New("--reset-passwords is not available with --mas")
	// ErrRoomsNeedAdmin: MAS mode, rooms in the roster, no Synapse admin token.
	ErrRoomsNeedAdmin = errors.New("rooms need a Synapse admin token")
	// ErrMASClient: the MAS client cannot be made from --mas and its credentials.
	ErrMASClient = errors.New("the MAS client cannot be made")
	// ErrMASUnreachable: nothing answers at --mas (exit 1 in the CLI).
	ErrMASUnreachable = errors.New("nothing answers at --mas")
	// ErrMASServerName: --server-name is not the server MAS serves.
	ErrMASServerName = errors.New("MAS serves another server name")
	// ErrMASPasswords: MAS has password logins off and the roster gives passwords.
	ErrMASPasswords = errors.New("MAS has no password logins")
	// ErrNoJournal: recover finds no journal in the state directory.
	ErrNoJournal = errors.New("no journal")
	// ErrManyJournals: recover finds the journals of several servers.
	ErrManyJournals = errors.New("several journals")
)

// ErrDelegated: the homeserver delegates logins to the Matrix Authentication Service,
// and neither the shared secret nor Synapse's admin API can create accounts there.
var ErrDelegated = errors.New("the homeserver's logins are handled by the Matrix Authentication Service")

// ErrRosterShrank: the roster is too small to trust for deactivations.
var ErrRosterShrank = errors.New("the roster is too small to deactivate anyone")

// RosterSizeError is the roster-size guard's refusal (see checkRosterSize).
type RosterSizeError struct {
	Users int
	Min   int     // --min-roster, when the roster has fewer users; else 0
	Last  int     // the last completed run's count, when below Ratio of it
	Ratio float64 // --min-roster-ratio
	Path  string  // where the last count is kept
}

func (e *RosterSizeError) Error() string {
	if e.Min > 0 {
		return fmt.Sprintf("%v: it has %d users, fewer than --min-roster %d: nothing was changed", ErrRosterShrank, e.Users, e.Min)
	}
	return fmt.Sprintf("%v: it has %d users, and the last completed run had %d (below --min-roster-ratio %g): nothing was changed",
		ErrRosterShrank, e.Users, e.Last, e.Ratio)
}
func (e *RosterSizeError) Unwrap() error { return ErrRosterShrank }

// ProviderError: single sign-on providers of the roster that MAS does not have (or has
// twice).
type ProviderError struct {
	Problems []string // one per provider
	Known    []string // MAS's providers: "ID (human name)"
}

func (e *ProviderError) Error() string {
	s := ""
	for i, p := range e.Problems {
		if i > 0 {
			s += "; "
		}
		s += p
	}
	return s + ": nothing was sent"
}

// StopKind says how a run that had started stopped.
type StopKind int

const (
	// StopTimeout: --timeout stopped the run; it resumes from the journal.
	StopTimeout StopKind = iota + 1
	// StopPlanTimeout: --timeout stopped the plan; nothing was changed.
	StopPlanTimeout
	// StopPlanFailed: the server's accounts could not be read; nothing was changed.
	StopPlanFailed
	// StopFailed: the run stopped on an error; every password sent is in Journal.
	StopFailed
	// StopFinish: the credentials or the report could not be written.
	StopFinish
	// StopJoins: room joins failed; the accounts themselves are fine.
	StopJoins
)

// StopError is a run that stopped, or could not finish, after it started.
type StopError struct {
	Kind    StopKind
	Err     error
	Journal string // the journal's path (StopFailed)
}

func (e *StopError) Error() string { return e.Err.Error() }
func (e *StopError) Unwrap() error { return e.Err }
