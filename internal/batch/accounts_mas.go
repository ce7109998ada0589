package batch

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/mas"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/reconcile"
	"github.com/provision-matrix/provision/internal/roster"
)

// MAS is the account system of a homeserver that delegates logins to the Matrix
// Authentication Service: accounts, passwords, email addresses, the admin flag and
// single sign-on links live in MAS and are managed through its admin API. Display
// names and rooms live in the homeserver: with Synapse's admin API (an admin token)
// they are managed there; without it, display names are set only when an account is
// created, and rooms cannot be joined (the CLI refuses such a roster before the run).
//
// MAS keeps no mark of who created an account, so which accounts provision created
// is read from the journal: those it recorded as created by one of its runs
// (GetUser reports them with provision's marker, so that --deactivate-missing
// deactivates them and nothing else).
type MAS struct {
	Client     *mas.Client
	ServerName string
	// Synapse is Synapse's admin API, nil without an admin token.
	Synapse AdminAPI
	// Providers maps each single sign-on provider the roster names (a MAS provider
	// ID or human name) to its ID; the CLI resolves them before the run.
	Providers map[string]string
	// Journal tells which accounts provision created; nil: none is known to be.
	Journal Journal
}

var (
	_ Accounts = (*MAS)(nil)
	_ AdminAPI = (*MAS)(nil)
)

// ErrNoSynapseAdmin: the request needs Synapse's admin API, and no admin token was
// given.
var ErrNoSynapseAdmin = errors.New("rooms and display names live in the homeserver, and provision reaches them only through Synapse's admin API (--admin-token-file)")

func (m *MAS) settlesResume() {}

// Create makes the MAS user, links it to its single sign-on identity, adds its email
// address and admin flag, and sets its password last: until that succeeds no password
// is live, so a failure on the way leaves nothing owed to anyone, and the next run
// finishes the account (Requests.Resumed).
func (m *MAS) Create(ctx context.Context, rq Requests, u roster.User, userID, password string) (Created, error) {
	var found mas.User
	var exists bool
	if err := rq.Read(func(ctx context.Context) error {
		var err error
		found, err = m.Client.UserByUsername(ctx, u.Localpart)
		if errors.Is(err, mas.ErrNotFound) {
			return nil
		}
		exists = err == nil
		return err
	}); err != nil {
		return Created{}, err
	}
	id := found.ID
	if exists {
		if !rq.Resumed {
			return Created{}, ErrExists
		}
		ours, err := m.ours(rq, u, found)
		if err != nil {
			return Created{}, err
		}
		if !ours {
			return Created{}, ErrExists
		}
	} else {
		err := rq.Write(func(ctx context.Context) error {
			nu, err := m.Client.CreateUser(ctx, u.Localpart, mas.CreateOptions{DisplayName: u.DisplayName})
			id = nu.ID
			return err
		})
		switch {
		case errors.Is(err, mas.ErrUserExists) && rq.Call.MaybeLanded:
			// The first attempt's answer was lost and a retry found the user:
			// the lookup above saw no such user, so that attempt made it.
			if err := rq.Read(func(ctx context.Context) error {
				nu, err := m.Client.UserByUsername(ctx, u.Localpart)
				id = nu.ID
				return err
			}); err != nil {
				return Created{}, err
			}
		case errors.Is(err, mas.ErrUserExists), errors.Is(err, mas.ErrUsernameReserved):
			return Created{}, errors.Join(ErrExists, err)
		case err != nil:
			return Created{}, err
		}
	}
	if err := m.finish(rq, u, id, password); err != nil {
		return Created{}, fmt.Errorf("the account was created but is not finished (run again to finish it): %w", err)
	}
	return Created{UserID: userID}, nil
}

// ours decides whether an account found on resuming an interrupted creation is the
// one that creation made. The journal says provision checked that the name was free
// and then asked MAS for it; what could make it someone else's since is a login
// through single sign-on (MAS creates the account at the first one), which leaves an
// upstream link, or a deactivation. Such an account is left alone.
func (m *MAS) ours(rq Requests, u roster.User, found mas.User) (bool, error) {
	if found.Deactivated() || found.Locked() {
		return false, nil
	}
	var links []mas.UpstreamLink
	if err := rq.Read(func(ctx context.Context) error {
		var err error
		links, err = m.Client.UserLinks(ctx, found.ID)
		return err
	}); err != nil {
		return false, err
	}
	for _, l := range links {
		if u.SSOSubject == "" || l.ProviderID != m.Providers[u.SSOProvider] || l.Subject != u.SSOSubject {
			return false, nil
		}
	}
	return true, nil
}

// finish does everything after the user exists; each step is harmless to repeat.
func (m *MAS) finish(rq Requests, u roster.User, id, password string) error {
	if u.SSOSubject != "" {
		provider, ok := m.Providers[u.SSOProvider]
		if !ok {
			return fmt.Errorf("MAS has no upstream provider %q", u.SSOProvider)
		}
		if err := rq.Write(func(ctx context.Context) error {
			return m.Client.AddUpstreamLink(ctx, id, provider, u.SSOSubject, "")
		}); err != nil {
			return err
		}
	}
	if u.Email != "" {
		if err := rq.Write(func(ctx context.Context) error {
			return m.Client.AddEmail(ctx, id, canonicalEmail(u.Email))
		}); err != nil {
			return err
		}
	}
	if u.Admin {
		if err := rq.Write(func(ctx context.Context) error {
			_, err := m.Client.SetAdmin(ctx, id, true)
			return err
		}); err != nil {
			return err
		}
	}
	if password == "" {
		return nil
	}
	// MAS's own complexity check applies (skip_password_check false): a roster's
	// weak password is refused here rather than set behind MAS's back.
	return rq.Write(func(ctx context.Context) error {
		return m.Client.SetPassword(ctx, id, password, false)
	})
}

// canonicalEmail is the address as provision compares it: MAS compares addresses
// case-insensitively, and the roster's spelling would otherwise show as a change on
// every --update.
func canonicalEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// localpart is the localpart of one of this server's user IDs.
func (m *MAS) localpart(userID string) (string, error) {
	lp, ok := strings.CutSuffix(strings.TrimPrefix(userID, "@"), ":"+m.ServerName)
	if !ok || !strings.HasPrefix(userID, "@") {
		return "", fmt.Errorf("%s is not a user of %s", userID, m.ServerName)
	}
	return lp, nil
}

// lookup finds the MAS user of a Matrix user ID; matrix.ErrNotFound if none.
func (m *MAS) lookup(ctx context.Context, userID string) (mas.User, error) {
	lp, err := m.localpart(userID)
	if err != nil {
		return mas.User{}, err
	}
	u, err := m.Client.UserByUsername(ctx, lp)
	if errors.Is(err, mas.ErrNotFound) {
		return mas.User{}, fmt.Errorf("%w: %w", matrix.ErrNotFound, err)
	}
	return u, err
}

// Created reports whether the journal says provision created the account.
func (m *MAS) created(localpart string) bool {
	if m.Journal == nil {
		return false
	}
	e, ok := m.Journal.Lookup(localpart)
	return ok && e.Done && (e.Status == journal.StatusCreated || e.Status == journal.StatusDelivered)
}

// GetUser describes the account as Synapse's admin API would: the admin flag and
// deactivation from MAS, the email addresses from MAS, the display name from Synapse
// (when there is an admin token), and provision's marker when the journal says
// provision created it.
func (m *MAS) GetUser(ctx context.Context, userID string) (matrix.AdminUser, error) {
	u, err := m.lookup(ctx, userID)
	if err != nil {
		return matrix.AdminUser{}, err
	}
	au := matrix.AdminUser{UserID: userID, Admin: u.Admin, Deactivated: u.Deactivated(), Locked: u.Locked()}
	emails, err := m.Client.UserEmails(ctx, u.ID)
	if err != nil {
		return matrix.AdminUser{}, err
	}
	for _, e := range emails {
		au.ThreePIDs = append(au.ThreePIDs, matrix.ThreePID{Medium: "email", Address: e})
	}
	if m.created(u.Username) {
		au.ExternalIDs = []matrix.ExternalID{reconcile.Marker(userID)}
	}
	if m.Synapse != nil && !au.Deactivated {
		su, err := m.Synapse.GetUser(ctx, userID)
		switch {
		case err == nil:
			au.DisplayName = su.DisplayName
			au.AppserviceID = su.AppserviceID
		case !errors.Is(err, matrix.ErrNotFound):
			// MAS provisions the homeserver's side of a new account in the
			// background: not there yet is not an error.
			return matrix.AdminUser{}, err
		}
	}
	return au, nil
}

// ListUsers pages through MAS's users; from is MAS's cursor.
func (m *MAS) ListUsers(ctx context.Context, from string, limit int) ([]matrix.AdminUser, string, error) {
	users, next, err := m.Client.ListUsers(ctx, from, limit)
	if err != nil {
		return nil, "", err
	}
	out := make([]matrix.AdminUser, 0, len(users))
	for _, u := range users {
		out = append(out, matrix.AdminUser{UserID: "@" + u.Username + ":" + m.ServerName, Admin: u.Admin, Deactivated: u.Deactivated(), Locked: u.Locked()})
	}
	return out, next, nil
}

// PutUser changes what --update manages: the admin flag and the email address in
// MAS, the display name in Synapse. It never creates an account (Create does) and
// never sets a password (the CLI refuses --reset-passwords with MAS). A new email
// address is added; MAS keeps the old one.
func (m *MAS) PutUser(ctx context.Context, userID string, p matrix.PutUser) (bool, error) {
	if p.Password != nil || p.ExternalIDs != nil {
		return false, errors.New("provision sets passwords and links through MAS only when it creates an account")
	}
	u, err := m.lookup(ctx, userID)
	if err != nil {
		return false, err
	}
	if p.Admin != nil && *p.Admin != u.Admin {
		if _, err := m.Client.SetAdmin(ctx, u.ID, *p.Admin); err != nil {
			return false, err
		}
	}
	if p.ThreePIDs != nil {
		for _, t := range *p.ThreePIDs {
			if t.Medium != "email" {
				continue
			}
			if err := m.Client.AddEmail(ctx, u.ID, canonicalEmail(t.Address)); err != nil {
				return false, err
			}
		}
	}
	if p.DisplayName != nil {
		if m.Synapse == nil {
			return false, ErrNoSynapseAdmin
		}
		if _, err := m.Synapse.PutUser(ctx, userID, matrix.PutUser{DisplayName: p.DisplayName}); err != nil {
			return false, err
		}
	}
	return false, nil
}

// Deactivate deactivates the MAS user, which ends its sessions and, with erase, asks
// the homeserver to erase the account (skip_erase false).
func (m *MAS) Deactivate(ctx context.Context, userID string, erase bool) error {
	u, err := m.lookup(ctx, userID)
	if err != nil {
		return err
	}
	_, err = m.Client.Deactivate(ctx, u.ID, !erase)
	return err
}

// JoinedRooms, ResolveAlias and Join go to Synapse's admin API.
func (m *MAS) JoinedRooms(ctx context.Context, userID string) ([]string, error) {
	if m.Synapse == nil {
		return nil, ErrNoSynapseAdmin
	}
	return m.Synapse.JoinedRooms(ctx, userID)
}

func (m *MAS) ResolveAlias(ctx context.Context, alias string) (string, error) {
	if m.Synapse == nil {
		return "", ErrNoSynapseAdmin
	}
	return m.Synapse.ResolveAlias(ctx, alias)
}

func (m *MAS) Join(ctx context.Context, roomIDOrAlias, userID string) (string, error) {
	if m.Synapse == nil {
		return "", ErrNoSynapseAdmin
	}
	return m.Synapse.Join(ctx, roomIDOrAlias, userID)
}
