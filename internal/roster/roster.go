package roster

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Format is the syntax of a roster file.
type Format string

// The roster formats.
const (
	FormatCSV  Format = "csv"
	FormatYAML Format = "yaml"
)

// FormatFromName tells the format from a file name's extension: .csv, .yaml
// or .yml, in any case.
func FormatFromName(name string) (Format, error) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return FormatCSV, nil
	case ".yaml", ".yml":
		return FormatYAML, nil
	}
	if name == "-" || name == "" {
		return "", errors.New("cannot tell the roster format of standard input — use --format csv or --format yaml")
	}
	return "", fmt.Errorf("cannot tell the roster format of %q from its name (expected .csv, .yaml or .yml) — rename it or use --format csv or --format yaml", name)
}

// User is one person to provision, as read from the roster.
type User struct {
	Line        int      // line where the user's record starts (1-based, counting the header line)
	Localpart   string   // valid and lowercased
	Original    string   // the localpart as written when it was lowercased, else ""
	DisplayName string   // "" = none
	Email       string   // "" = none
	Admin       bool     //
	UserType    string   // "" = a normal user
	Password    string   // supplied by the admin; "" = generate one (none for an SSO user)
	Rooms       []string // room IDs (!x:hs) or aliases (#x:hs)
	Recipient   string   // the user's own age/SSH public key as written; "" = none
	// SSOProvider and SSOSubject bind the account to the person's identity
	// at a single sign-on provider, and then it gets no password: both are
	// set or neither. SSOProvider is the provider as the homeserver names
	// it (Synapse's auth_provider: oidc, oidc-<idp_id>, saml, cas; MAS: the
	// upstream provider's ULID or human name); SSOSubject is the person's
	// ID there (Synapse's external_id, the OIDC sub claim or what
	// subject_claim names).
	SSOProvider string
	SSOSubject  string
}

// Options say how to read and validate a roster.
type Options struct {
	// Format is the roster's syntax; "" means: tell it from the file name.
	Format Format
	// ServerName is the homeserver's server_name, used to check that each
	// full user ID ("@"+localpart+":"+server) fits in 255 bytes. When it is
	// "", only localparts too long for any server name are refused.
	ServerName string
	// CheckPassword validates supplied passwords (the server's policy); its
	// error message becomes the problem's message, so it must not contain
	// the password. nil accepts any password.
	CheckPassword func(string) error
	// CheckRecipient validates per-user public keys; nil accepts any.
	CheckRecipient func(string) error
	// Columns reads a CSV exported from another system (Google Workspace,
	// Entra ID, Okta, or an explicit mapping); nil means provision's own
	// columns. See [ParseColumns].
	Columns *Mapping
	// SSOProvider is the single sign-on provider (--sso-provider) of users
	// who have an sso_subject but no sso_provider of their own. With a
	// preset (Columns), the subject the export holds (Entra's object ID,
	// Okta's user id) is read only when SSOProvider is set: without it the
	// preset makes password accounts, as it always did. "" = none.
	SSOProvider string
	// Checked says the input already passed [Check] with these options, as
	// the second of a run's two passes has. [Each] then skips the duplicate
	// check, the one rule that keeps something per user (see Limits in the
	// package documentation), so that the second pass streams a roster of any
	// length in constant memory.
	Checked bool
}

// Problem is one thing wrong with a roster, at a place in the file.
type Problem struct {
	File         string // the file's name as given; "<stdin>" for "-"
	Line, Column int    // 1-based; 0 when unknown
	Message      string // what is wrong
	Hint         string // what to do about it; may be ""
}

// String formats the problem as "FILE:LINE:COLUMN: message — hint", leaving
// out the parts that are unknown.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Line))
		if p.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Column))
		}
	}
	b.WriteString(": ")
	b.WriteString(p.Message)
	if p.Hint != "" {
		b.WriteString(" — ")
		b.WriteString(p.Hint)
	}
	return b.String()
}

// maxProblems bounds the problems kept: past a thousand, the file is not a
// roster with a few mistakes, and listing more helps nobody.
const maxProblems = 1000

// Errors lists the problems found in a roster, in file order.
type Errors struct {
	Problems []Problem // at most 1000
	Total    int       // all problems found, including those not kept
}

// Error returns one problem per line.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	if more := e.Total - len(e.Problems); more > 0 {
		fmt.Fprintf(&b, "\n... and %d more problems", more)
	}
	return b.String()
}

// Stats describe a roster that passed [Check].
type Stats struct {
	Users      int // valid users
	Lowercased int // users whose localpart was written with capitals
}

// Check reads the whole roster and returns every problem in it as an
// *[Errors], or, when there are none, the roster's statistics. name is the
// file name used in messages; "-" stands for standard input.
//
// Its memory does not grow with the file except for a few tens of bytes per
// user, used to find duplicates.
func Check(r io.Reader, name string, opts Options) (Stats, error) {
	run, err := newRun(name, opts)
	if err != nil {
		return Stats{}, err
	}
	err = run.read(r)
	return run.stats, err
}

// Each reads the roster and calls fn with each user in file order. It applies
// the same rules as [Check] but stops at the first problem, returning it as
// an *[Errors] without calling fn for that user or any later one. It stops
// too when fn returns an error, and returns that error unchanged.
func Each(r io.Reader, name string, opts Options, fn func(User) error) error {
	run, err := newRun(name, opts)
	if err != nil {
		return err
	}
	run.stopAtFirst = true
	run.emit = fn
	return run.read(r)
}

// ReadAll reads a whole roster into memory, for tests and small inputs. Like
// [Check], it reports every problem.
func ReadAll(r io.Reader, name string, opts Options) ([]User, Stats, error) {
	run, err := newRun(name, opts)
	if err != nil {
		return nil, Stats{}, err
	}
	var users []User
	run.emit = func(u User) error {
		users = append(users, u)
		return nil
	}
	if err := run.read(r); err != nil {
		return nil, run.stats, err
	}
	return users, run.stats, nil
}

// displayName is how a file is named in problems.
func displayName(name string) string {
	if name == "-" || name == "" {
		return "<stdin>"
	}
	return name
}

func newRun(name string, opts Options) (*run, error) {
	format := opts.Format
	if format == "" {
		f, err := FormatFromName(name)
		if err != nil {
			return nil, err
		}
		format = f
	}
	if format != FormatCSV && format != FormatYAML {
		return nil, fmt.Errorf("unknown roster format %q — use csv or yaml", format)
	}
	if opts.Columns != nil && format != FormatCSV {
		return nil, fmt.Errorf("--columns reads CSV exports, and %s is YAML — write the YAML roster with provision's own keys, or leave out --columns", displayName(name))
	}
	if err := checkOptionProvider(&opts); err != nil {
		return nil, err
	}
	return &run{
		file:    displayName(name),
		format:  format,
		opts:    opts,
		seen:    newSeenSet(opts.Checked),
		seenSSO: newSeenSet(opts.Checked),
	}, nil
}

// checkOptionProvider checks --sso-provider by the rules of the sso_provider
// column, and trims it as the column is trimmed.
func checkOptionProvider(opts *Options) error {
	if opts.SSOProvider == "" {
		return nil
	}
	p := strings.TrimSpace(opts.SSOProvider)
	if msg, hint := checkSSOProvider(p); msg != "" {
		return fmt.Errorf("--sso-provider: %s — %s", msg, hint)
	}
	opts.SSOProvider = p
	return nil
}

// run is one pass over a roster.
type run struct {
	file        string
	format      Format
	opts        Options
	stopAtFirst bool             // Each: stop at the first problem
	emit        func(User) error // nil in Check
	emitErr     error            // fn's error, returned as is
	errs        Errors
	stats       Stats
	seen        *seenSet
	seenSSO     *seenSet              // (provider, subject) pairs, to find two people with one identity
	locate      func(line int) string // records: names an earlier record; nil for files (see at)
}

// errStop ends a pass early: at the first problem in Each, on a problem that
// makes the rest of the input unreadable, or when emit fails. The reason is
// in run.errs or run.emitErr.
var errStop = errors.New("roster: stop")

func (r *run) read(src io.Reader) error {
	var err error
	if r.format == FormatYAML {
		err = r.readYAML(src)
	} else {
		err = r.readCSV(src)
	}
	switch {
	case r.emitErr != nil:
		return r.emitErr
	case err != nil && err != errStop:
		return err
	case r.errs.Total > 0:
		slices.SortStableFunc(r.errs.Problems, func(a, b Problem) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Column - b.Column
		})
		return &r.errs
	}
	return nil
}

// problem records a problem, and reports whether reading should stop.
func (r *run) problem(line, col int, msg, hint string) bool {
	r.errs.Total++
	if len(r.errs.Problems) < maxProblems {
		r.errs.Problems = append(r.errs.Problems, Problem{File: r.file, Line: line, Column: col, Message: msg, Hint: hint})
	}
	return r.stopAtFirst
}
