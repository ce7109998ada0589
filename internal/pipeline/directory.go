package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/directory"
	"github.com/provision-matrix/provision/internal/roster"
	"github.com/provision-matrix/provision/internal/safefile"
)

// RosterSource is where the pipeline's people come from: a roster file
// (*roster.Source) or a directory (*DirectorySource). Check reads and validates all
// of it and reports every problem; Each streams the users that Check validated, as
// often as the run needs them.
type RosterSource interface {
	Check(opts roster.Options) (roster.Stats, error)
	Each(opts roster.Options, fn func(roster.User) error) error
	Name() string
	Close() error
}

var (
	_ RosterSource = (*roster.Source)(nil)
	_ RosterSource = (*DirectorySource)(nil)
)

// DirectorySource is the roster read from LDAP or Active Directory. The directory is
// searched once, by the first Check: a second search could answer differently from
// the one validated, so the run replays the validated people (kept by the directory
// package in an unlinked 0600 file) instead.
type DirectorySource struct {
	ctx   context.Context
	cfg   directory.Config
	res   *directory.Result
	stats directory.Stats
	name  string
}

// NewDirectorySource turns the configuration into a directory.Config, checking what
// can be checked without connecting.
func NewDirectorySource(ctx context.Context, cfg *config.Config) (*DirectorySource, error) {
	q, err := directory.NewQuery(cfg.LDAPURL, cfg.LDAPBase, cfg.LDAPScope, cfg.LDAPFilter)
	if err != nil {
		return nil, kind(ErrInvalid, fmt.Errorf("the directory: %w", err))
	}
	m, err := directory.ParseMapping(cfg.LDAPMap)
	if err != nil {
		return nil, kind(ErrInvalid, fmt.Errorf("--ldap-map: %w", err))
	}
	d := &DirectorySource{ctx: ctx, name: q.String()}
	d.cfg = directory.Config{
		Query:        q,
		BindDN:       cfg.LDAPBindDN,
		BindPassword: cfg.LDAPPassword,
		StartTLS:     cfg.LDAPStartTLS,
		CAFile:       cfg.CAFile,
		Mapping:      m,
		SSOProvider:  cfg.SSOProvider,
	}
	if cfg.RoomsMap != "" {
		if d.cfg.Rooms, err = directory.LoadRoomsMap(cfg.RoomsMap); err != nil {
			return nil, kind(ErrInvalid, fmt.Errorf("--rooms-map: %w", err))
		}
	}
	if err := d.cfg.Validate(); err != nil {
		var de *directory.Error
		if errors.As(err, &de) {
			return nil, err // explained in errors.go
		}
		return nil, kind(ErrInvalid, fmt.Errorf("the directory: %w", err))
	}
	return d, nil
}

// Name names the search (server, base, scope, filter), never the password.
func (d *DirectorySource) Name() string { return d.name }

// Check searches the directory the first time; later calls (once the server's name
// and policy are known) check the people already read against the new options.
func (d *DirectorySource) Check(opts roster.Options) (roster.Stats, error) {
	if d.res == nil {
		dc := d.cfg
		opts.Columns = nil
		dc.Roster = opts
		res, err := directory.Read(d.ctx, dc)
		if err != nil {
			return roster.Stats{}, err
		}
		d.res, d.stats = res, res.Stats()
		return roster.Stats{Users: d.stats.Users, Lowercased: d.stats.Lowercased}, nil
	}
	// A directory gives no passwords, so the one rule that can newly fail is the
	// length of a user ID on a server whose name was not known before.
	if opts.ServerName != "" {
		var long []string
		_ = d.res.Each(func(p directory.Person) error {
			if id := "@" + p.Localpart + ":" + opts.ServerName; len(id) > 255 && len(long) < 20 {
				long = append(long, fmt.Sprintf("%s: the user ID %s is %d bytes, more than 255", p.DN, id, len(id)))
			}
			return nil
		})
		if len(long) > 0 {
			return roster.Stats{}, kind(ErrUserIDTooLong, errors.New(strings.Join(long, "\n")))
		}
	}
	return roster.Stats{Users: d.stats.Users, Lowercased: d.stats.Lowercased}, nil
}

// Each replays the people the search found and Check validated.
func (d *DirectorySource) Each(_ roster.Options, fn func(roster.User) error) error {
	if d.res == nil {
		return errors.New("the directory was not read")
	}
	return d.res.EachUser(fn)
}

// Close removes the people kept for the run.
func (d *DirectorySource) Close() error {
	if d.res == nil {
		return nil
	}
	return d.res.Close()
}

// Summary says what the search found, for the operator.
func (d *DirectorySource) Summary() string {
	s := d.stats
	msg := fmt.Sprintf("directory %s: %d entries, %d users", d.name, s.Entries, s.Users)
	if s.Disabled > 0 {
		msg += fmt.Sprintf(", %d disabled accounts left out (they count as gone)", s.Disabled)
	}
	if s.WithRooms > 0 {
		msg += fmt.Sprintf(", %d with rooms from their groups", s.WithRooms)
	}
	if s.Referrals > 0 {
		msg += fmt.Sprintf(", %d referrals to other servers not followed", s.Referrals)
	}
	return msg
}

// managedRooms are the rooms of the --rooms-map file: the only rooms
// --leave-dropped-rooms ever makes anyone leave.
func managedRooms(cfg *config.Config) ([]string, error) {
	if cfg.RoomsMap == "" {
		return nil, nil
	}
	m, err := directory.LoadRoomsMap(cfg.RoomsMap)
	if err != nil {
		return nil, kind(ErrInvalid, fmt.Errorf("--rooms-map: %w", err))
	}
	return m.AllRooms(), nil
}

// The roster-size guard. A directory search cut short, an export that lost half its
// rows or a filter that now matches a tenth of the people must never read as
// "everyone left": with --deactivate-missing, a roster smaller than --min-roster, or
// smaller than --min-roster-ratio of the last completed run's, stops the run before
// any change. The last count is kept per server in the state directory.

// rosterCountPath is beside the server's journal: <journal>.roster-count. The count
// belongs to the same server and the same runs as the journal (--journal included).
func rosterCountPath(cfg *config.Config, serverName string) string {
	return journalPath(cfg, serverName) + ".roster-count"
}

// lastRosterCount is the count the last completed run recorded; 0 when there is none.
func lastRosterCount(path string) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the last roster size: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0, kind(ErrRosterCount, fmt.Errorf("%s does not hold a number of users", path))
	}
	return n, nil
}

// checkRosterSize refuses deactivations from a roster that is suspiciously small.
func checkRosterSize(cfg *config.Config, serverName string, users int) error {
	if !cfg.DeactivateMissing {
		return nil
	}
	if cfg.MinRoster > 0 && users < cfg.MinRoster {
		return &RosterSizeError{Users: users, Min: cfg.MinRoster}
	}
	// The comparison with the last run is the directory's guard (issue 15: an expired
	// bind or a wrong base must never look like "everyone left"); a file roster has
	// --max-deactivate, and a roster that an operator trims on purpose is common.
	if cfg.MinRosterRatio <= 0 || !cfg.IsDirectory() {
		return nil
	}
	path := rosterCountPath(cfg, serverName)
	last, err := lastRosterCount(path)
	if err != nil || last == 0 {
		return err
	}
	if float64(users) < cfg.MinRosterRatio*float64(last) {
		return &RosterSizeError{Users: users, Last: last, Ratio: cfg.MinRosterRatio, Path: path}
	}
	return nil
}

// saveRosterSize records the roster's size after a run that completed, for the next
// run's guard. Written atomically: a crash leaves the old count or the new one.
func saveRosterSize(cfg *config.Config, serverName string, users int) error {
	path := rosterCountPath(cfg, serverName)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := safefile.Create(path, true)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(f, "%d\n", users); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}
