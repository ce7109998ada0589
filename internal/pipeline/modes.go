package pipeline

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/provision-matrix/provision/internal/batch"
	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/password"
	"github.com/provision-matrix/provision/internal/safefile"
)

// mode is an account system as the pipeline sees it: how to check, reading only,
// that the server can be provisioned this way, and the batch.Accounts (and, for the
// sync features, the admin API) that carry the run out. Adding an account system is
// one more mode, chosen in newMode, plus its flags.
type mode interface {
	// preflight checks the server and returns what the run needs to know of it.
	preflight(ctx context.Context, e *batch.Engine, c *matrix.Client) (serverInfo, error)
	accounts() batch.Accounts
	adminAPI() batch.AdminAPI // nil: no sync features
	// sync: the run plans against the server first (admin APIs); otherwise it
	// streams the roster and creates who is missing.
	sync() bool
	// journalKey is the secret the journal's key is derived from: stable across runs
	// (a shared secret, a client secret), or nil to keep a key file beside the journal
	// (an admin token rotates). legacy are keys earlier versions used.
	journalKey() (key []byte, legacy [][]byte)
}

// serverInfo is what the preflight learned.
type serverInfo struct {
	serverName string           // "" = learned from the first registration
	self       string           // the admin token's user ID
	policy     *password.Policy // the server's published password policy, if any
}

func newMode(cfg *config.Config, log *slog.Logger) (mode, error) {
	if cfg.Mode() == config.ModeMAS {
		return &masMode{cfg: cfg, log: log}, nil
	}
	if cfg.AdminToken != nil {
		// An admin token wins over a shared secret: it can do all the secret can and
		// more.
		return &adminMode{cfg: cfg, log: log}, nil
	}
	return &secretMode{cfg: cfg, log: log}, nil
}

// secretMode registers accounts with the registration shared secret (Synapse,
// Dendrite).
type secretMode struct {
	cfg    *config.Config
	log    *slog.Logger
	client *matrix.Client
}

func (m *secretMode) preflight(ctx context.Context, e *batch.Engine, c *matrix.Client) (serverInfo, error) {
	m.client = c
	var info serverInfo
	if err := reachable(ctx, e, c, m.cfg); err != nil {
		return info, err
	}
	// Checks the secret itself without creating anyone (a dry run too), so a wrong
	// secret stops the run here instead of failing every user.
	if err := e.Do(ctx, ctx, &batch.Call{}, func(ctx context.Context) error {
		return c.VerifySharedSecret(ctx, m.cfg.SharedSecret)
	}); err != nil {
		if errors.Is(err, matrix.ErrNoSharedSecretEndpoint) {
			if issuer, delegated := delegation(ctx, e, c); delegated {
				return info, fmt.Errorf("%w (%s): the shared-secret endpoint is off", ErrDelegated, issuer)
			}
		}
		return info, err
	}
	info.serverName = m.cfg.ServerName
	if info.serverName == "" {
		_ = e.Do(ctx, ctx, &batch.Call{}, func(ctx context.Context) error {
			sn, err := c.ServerName(ctx)
			info.serverName = sn
			return err
		})
	}
	info.policy = serverPolicy(ctx, e, c, m.log)
	return info, nil
}

func (m *secretMode) accounts() batch.Accounts {
	return batch.SharedSecret{Server: m.client, Secret: m.cfg.SharedSecret}
}
func (m *secretMode) adminAPI() batch.AdminAPI { return nil }
func (m *secretMode) sync() bool               { return false }
func (m *secretMode) journalKey() ([]byte, [][]byte) {
	return m.cfg.SharedSecret, nil
}

// adminMode keeps a Synapse server in line with the roster through its admin API.
type adminMode struct {
	cfg   *config.Config
	log   *slog.Logger
	admin *matrix.Admin
}

func (m *adminMode) preflight(ctx context.Context, e *batch.Engine, c *matrix.Client) (serverInfo, error) {
	var info serverInfo
	if m.cfg.SharedSecret != nil {
		m.log.Info("both a shared secret and an admin token are configured: using the admin token (Synapse admin API)")
	}
	if err := reachable(ctx, e, c, m.cfg); err != nil {
		return info, err
	}
	// Under MAS, Synapse's admin API is still there, but it no longer sets
	// passwords: find that out before the first user, not on every user's row.
	if issuer, delegated := delegation(ctx, e, c); delegated {
		return info, fmt.Errorf("%w (%s)", ErrDelegated, issuer)
	}
	m.admin = c.Admin(m.cfg.AdminToken)
	if err := e.Do(ctx, ctx, &batch.Call{}, m.admin.Probe); err != nil {
		if errors.Is(err, matrix.ErrNoAdminAPI) {
			if issuer, delegated := delegation(ctx, e, c); delegated {
				return info, fmt.Errorf("%w (%s)", ErrDelegated, issuer)
			}
		}
		return info, err
	}
	if err := e.Do(ctx, ctx, &batch.Call{}, func(ctx context.Context) error {
		var err error
		info.self, err = m.admin.WhoAmI(ctx)
		return err
	}); err != nil {
		return info, err
	}
	info.serverName = m.cfg.ServerName
	if _, sn, ok := strings.Cut(info.self, ":"); ok && info.serverName == "" {
		info.serverName = sn
	}
	if info.serverName == "" {
		return info, kind(ErrNoServerName, fmt.Errorf("cannot tell the server name from the admin token's user %q", info.self))
	}
	info.policy = serverPolicy(ctx, e, c, m.log)
	return info, nil
}

func (m *adminMode) accounts() batch.Accounts { return batch.SynapseAdmin{API: m.admin} }
func (m *adminMode) adminAPI() batch.AdminAPI { return m.admin }
func (m *adminMode) sync() bool               { return true }
func (m *adminMode) journalKey() ([]byte, [][]byte) {
	// Admin tokens change when the admin logs in again: a key file instead, and the
	// token (what earlier versions used) for a journal they wrote.
	return m.cfg.SharedSecret, [][]byte{m.cfg.AdminToken}
}

// reachable checks that a Matrix homeserver answers at the URL.
func reachable(ctx context.Context, e *batch.Engine, c *matrix.Client, cfg *config.Config) error {
	if err := e.Do(ctx, ctx, &batch.Call{FailUnreachable: true}, func(ctx context.Context) error {
		_, err := c.Versions(ctx)
		return err
	}); err != nil {
		if errors.Is(err, batch.ErrInterrupted) {
			return err
		}
		return kind(ErrUnreachable, fmt.Errorf("no Matrix homeserver answers at %s: %w", cfg.Homeserver, err))
	}
	return nil
}

// delegation asks whether the server delegates logins to MAS, and to which issuer.
func delegation(ctx context.Context, e *batch.Engine, c *matrix.Client) (string, bool) {
	var issuer string
	var delegated bool
	_ = e.Do(ctx, ctx, &batch.Call{}, func(ctx context.Context) error {
		var err error
		issuer, delegated, err = c.AuthIssuer(ctx)
		return err
	})
	return issuer, delegated
}

// serverPolicy is the password policy the server publishes, if it publishes one
// (Synapse does; Dendrite does not). A server that does not answer is not fatal:
// the configured policy applies.
func serverPolicy(ctx context.Context, e *batch.Engine, c *matrix.Client, log *slog.Logger) *password.Policy {
	var pol password.Policy
	var ok bool
	err := e.Do(ctx, ctx, &batch.Call{}, func(ctx context.Context) error {
		var err error
		pol, ok, err = c.PasswordPolicy(ctx)
		return err
	})
	if err != nil {
		log.Warn("could not read the server's password policy; using the configured one", "error", err.Error())
		return nil
	}
	if !ok {
		return nil
	}
	return &pol
}

// journalPath is where this server's journal lives: --journal, else one file per
// server in the state directory, named after the server name (or, before it is known,
// the homeserver's host), so that every run against the same server finds it, whatever
// the report is called.
func journalPath(cfg *config.Config, serverName string) string {
	if cfg.Journal != "" {
		return cfg.Journal
	}
	name := serverName
	if name == "" {
		name = hostOf(cfg.Homeserver)
	}
	return filepath.Join(cfg.StateDir, safeName(name)+".journal")
}

func hostOf(url string) string {
	s := url
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	return s
}

// safeName maps a server name to a file name: anything outside [A-Za-z0-9._-] becomes
// '_' (a port's ':' too).
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' {
		return "_" + string(b)
	}
	return string(b)
}

// openJournal opens (or starts) the journal at path, making the state directory
// (0700) when it is the default place.
func openJournal(cfg *config.Config, path, serverName string, m mode) (*journal.Journal, error) {
	secret, legacy := m.journalKey()
	var key [32]byte
	if secret != nil {
		key = journal.DeriveKey(secret)
	} else {
		k, err := keyFile(path + ".key")
		if err != nil {
			return nil, err
		}
		key = k
	}
	// The journal is the server's, whatever URL reaches it (localhost or 127.0.0.1):
	// its header names the server name when it is known. "-" skips the check.
	server := serverName
	switch server {
	case "":
		server = cfg.Homeserver
	case "-":
		server = ""
	}
	opts := journal.Options{Fresh: cfg.Fresh, Homeserver: server, SyncWindow: -1}
	j, err := journal.Open(path, key, opts)
	for _, l := range legacy {
		if !errors.Is(err, journal.ErrWrongKey) || l == nil {
			break
		}
		j, err = journal.Open(path, journal.DeriveKey(l), opts)
	}
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	return j, nil
}

// keyFile reads the journal key kept in path, making a random one (0600) the first
// time.
func keyFile(path string) ([32]byte, error) {
	var key [32]byte
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(b) == len(key):
		copy(key[:], b)
		return key, nil
	case err == nil:
		return key, kind(ErrJournalKeyDamaged, fmt.Errorf("the journal key %s is damaged (%d bytes, want %d)", path, len(b), len(key)))
	case !errors.Is(err, fs.ErrNotExist):
		return key, kind(ErrInvalid, fmt.Errorf("the journal key %s cannot be read: %w", path, err))
	}
	rand.Read(key[:])
	if err := safefile.WriteFile(path, key[:], false); err != nil {
		return key, fmt.Errorf("the journal key %s cannot be written: %w", path, err)
	}
	return key, nil
}
