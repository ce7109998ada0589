package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/provision-matrix/provision/internal/batch"
	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/mas"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/password"
	"github.com/provision-matrix/provision/internal/roster"
)

// masMode provisions a homeserver that delegates logins to the Matrix Authentication
// Service: accounts are made and changed through MAS's admin API (batch.MAS), and,
// with an admin token, display names and rooms through Synapse's.
type masMode struct {
	cfg *config.Config
	log *slog.Logger
	api *batch.MAS
	// each reads the checked roster again (see useRoster).
	each func(func(roster.User) error) error
}

// rosterAware is a mode whose preflight depends on what the roster asks for.
type rosterAware interface {
	useRoster(each func(func(roster.User) error) error)
}

// journalAware is a mode that reads the journal to know which accounts provision
// created (MAS has no mark of its own for them).
type journalAware interface {
	useJournal(j batch.Journal)
}

func (m *masMode) useRoster(each func(func(roster.User) error) error) { m.each = each }
func (m *masMode) useJournal(j batch.Journal) {
	if m.api != nil {
		m.api.Journal = j
	}
}

// rosterNeeds is what the roster asks of the server.
type rosterNeeds struct {
	passwords int      // users who get a password
	rooms     int      // users with rooms
	providers []string // single sign-on providers named, in first-seen order
}

func (m *masMode) rosterNeeds() (rosterNeeds, error) {
	var n rosterNeeds
	if m.each == nil {
		return n, nil
	}
	err := m.each(func(u roster.User) error {
		if u.SSOSubject == "" {
			n.passwords++
		} else if !slices.Contains(n.providers, u.SSOProvider) {
			n.providers = append(n.providers, u.SSOProvider)
		}
		if len(u.Rooms) > 0 {
			n.rooms++
		}
		return nil
	})
	return n, err
}

func (m *masMode) preflight(ctx context.Context, e *batch.Engine, c *matrix.Client) (serverInfo, error) {
	var info serverInfo
	cfg := m.cfg
	if cfg.ResetPasswords {
		// Which accounts provision created is the journal's "created": a reset would
		// record an existing account the same way, and --deactivate-missing could
		// then take it for one of provision's.
		return info, kind(ErrResetWithMAS, errors.New("--reset-passwords is not available with --mas: nothing was sent"))
	}
	needs, err := m.rosterNeeds()
	if err != nil {
		return info, err
	}
	if needs.rooms > 0 && cfg.AdminToken == nil {
		return info, kind(ErrRoomsNeedAdmin, fmt.Errorf("%d roster user%s %s rooms, and with --mas provision joins rooms only through Synapse's admin API: nothing was sent", needs.rooms, plural(needs.rooms), hasHave(needs.rooms)))
	}

	hc, err := matrix.NewHTTPClient(matrix.HTTPOptions{CAFile: cfg.CAFile, Conns: cfg.Concurrency, RequestTimeout: cfg.RequestTimeout})
	if err != nil {
		return info, err
	}
	client, err := mas.NewClient(cfg.MAS, hc, cfg.MASClientID, cfg.MASClientSecret, nil)
	if err != nil {
		return info, kind(ErrMASClient, fmt.Errorf("--mas: %w", err))
	}

	// The site config proves that the client gets an admin token and that the admin
	// API answers, and says what the server allows.
	var site mas.SiteConfig
	if err := e.Do(ctx, ctx, &batch.Call{FailUnreachable: true}, func(ctx context.Context) error {
		var err error
		site, err = client.SiteConfig(ctx)
		return err
	}); err != nil {
		if errors.Is(err, batch.ErrInterrupted) {
			return info, err
		}
		if matrix.Unreachable(err) {
			return info, kind(ErrMASUnreachable, fmt.Errorf("nothing answers at --mas %s: %w", cfg.MAS, err))
		}
		return info, err
	}
	info.serverName = site.ServerName
	if cfg.ServerName != "" && site.ServerName != "" && cfg.ServerName != site.ServerName {
		return info, kind(ErrMASServerName, fmt.Errorf("--server-name %s, but MAS serves %s: nothing was sent", cfg.ServerName, site.ServerName))
	}
	if info.serverName == "" {
		info.serverName = cfg.ServerName
	}
	if info.serverName == "" {
		return info, kind(ErrNoServerName, errors.New("MAS did not say which server name it serves"))
	}
	if !site.PasswordLoginEnabled && needs.passwords > 0 {
		return info, kind(ErrMASPasswords, fmt.Errorf("%w, and %d roster user%s would get a password: nothing was sent", mas.ErrPasswordsDisabled, needs.passwords, plural(needs.passwords)))
	}
	info.policy = masPolicy(site)

	providers, err := m.resolveProviders(ctx, e, client, needs.providers)
	if err != nil {
		return info, err
	}

	m.api = &batch.MAS{Client: client, ServerName: info.serverName, Providers: providers}
	if cfg.AdminToken != nil {
		// Synapse's admin API, for display names and rooms.
		if err := reachable(ctx, e, c, cfg); err != nil {
			return info, err
		}
		admin := c.Admin(cfg.AdminToken)
		if err := e.Do(ctx, ctx, &batch.Call{}, admin.Probe); err != nil {
			return info, err
		}
		if err := e.Do(ctx, ctx, &batch.Call{}, func(ctx context.Context) error {
			var err error
			info.self, err = admin.WhoAmI(ctx)
			return err
		}); err != nil {
			return info, err
		}
		m.api.Synapse = admin
	} else if cfg.Update {
		m.log.Warn("--update does not compare display names: they live in the homeserver, which provision reaches only with --admin-token-file (new accounts get theirs all the same)")
	}
	return info, nil
}

// masPolicy is the password policy provision generates for. MAS scores passwords
// with zxcvbn (0 to 4) and refuses those below minimum_password_complexity; that
// score cannot be a rule of length and character classes. What can be said: a random
// password of 12 or more characters from provision's generator scores 4, the highest,
// so at MAS's default (3) or above the generator is kept at 12 or more. A roster's
// own weak password is refused by MAS when it is set, on that user's row.
func masPolicy(site mas.SiteConfig) *password.Policy {
	if site.MinimumPasswordComplexity <= 0 {
		return nil
	}
	return &password.Policy{MinLength: 12}
}

// resolveProviders maps each provider the roster names to MAS's provider ID: by ID,
// else by human name. Any that matches none (or two) stops the run before anything
// is created: an account linked to no provider would be unreachable.
func (m *masMode) resolveProviders(ctx context.Context, e *batch.Engine, client *mas.Client, names []string) (map[string]string, error) {
	out := map[string]string{}
	if len(names) == 0 {
		return out, nil
	}
	var list []mas.Provider
	if err := e.Do(ctx, ctx, &batch.Call{}, func(ctx context.Context) error {
		var err error
		list, err = client.UpstreamProviders(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	var problems []string
	for _, name := range names {
		var match []mas.Provider
		for _, p := range list {
			if p.ID == name {
				match = []mas.Provider{p}
				break
			}
			if p.HumanName != "" && strings.EqualFold(p.HumanName, name) {
				match = append(match, p)
			}
		}
		switch len(match) {
		case 1:
			out[name] = match[0].ID
			if !match[0].Enabled() {
				m.log.Warn("the upstream provider is disabled in MAS: its users cannot log in until it is enabled", "provider", name)
			}
		case 0:
			problems = append(problems, fmt.Sprintf("%q matches no upstream provider of MAS", name))
		default:
			problems = append(problems, fmt.Sprintf("%q is the name of %d upstream providers of MAS: use the ID", name, len(match)))
		}
	}
	if len(problems) == 0 {
		return out, nil
	}
	known := make([]string, 0, len(list))
	for _, p := range list {
		s := p.ID
		if p.HumanName != "" {
			s += " (" + p.HumanName + ")"
		}
		known = append(known, s)
	}
	return nil, &ProviderError{Problems: problems, Known: known}
}

func (m *masMode) accounts() batch.Accounts { return m.api }
func (m *masMode) adminAPI() batch.AdminAPI { return m.api }
func (m *masMode) sync() bool               { return true }

// journalKey: MAS's access tokens last minutes; the client secret is what stays.
func (m *masMode) journalKey() ([]byte, [][]byte) { return m.cfg.MASClientSecret, nil }

func hasHave(n int) string {
	if n == 1 {
		return "has"
	}
	return "have"
}
