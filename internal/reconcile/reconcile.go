// Package reconcile works out what must change on a homeserver so that it holds what
// a roster says: which accounts to create, which to update (display name, email,
// admin flag, rooms, password on request), which are already right, and which
// accounts that provision created and the roster no longer names to deactivate.
//
// It is pure: it compares a roster user with what the server answered about the
// account (the batch package does the asking) and returns a Change; a Plan is the list
// of changes, with the text an operator reads before anything happens. Nothing here
// sends a request, so every rule is a table test.
//
// Which accounts provision created is recorded on the server itself, not in a local
// file: every account provision creates carries an external ID of its own (Marker), so
// that a scheduled run on another machine, without the journal, still knows which
// accounts it may deactivate. docs/sync.md explains why that is harmless to Synapse's
// single sign-on.
package reconcile

import (
	"slices"
	"strings"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/roster"
)

// MarkerProvider is the auth_provider of provision's marker. No Synapse identity
// provider can have this ID: OIDC providers are "oidc" or "oidc-…", SAML is "saml" and
// CAS is "cas", so no single sign-on login can ever resolve to the marked account.
const MarkerProvider = "provision"

// Marker is the external ID provision records on an account it creates. The external
// ID is the user ID itself, because Synapse requires each (auth_provider,
// external_id) pair to belong to one account only.
func Marker(userID string) matrix.ExternalID {
	return matrix.ExternalID{AuthProvider: MarkerProvider, ExternalID: userID}
}

// Marked reports whether provision created the account: it carries provision's
// marker for its own user ID.
func Marked(u matrix.AdminUser) bool {
	return slices.Contains(u.ExternalIDs, Marker(u.UserID))
}

// Options are the operator's choices.
type Options struct {
	// Update changes existing accounts whose display name, email or admin flag differ
	// from the roster, and joins them to rooms the roster added.
	Update bool
	// DeactivateMissing deactivates accounts provision created that the roster no
	// longer names.
	DeactivateMissing bool
	// Erase also erases deactivated accounts' profiles and messages (for future readers).
	Erase bool
	// MaxDeactivate is the most accounts one run may deactivate; more aborts the run
	// before anything is changed. Negative means no limit.
	MaxDeactivate int
	// ResetPasswords gives every existing account of the roster a new password.
	ResetPasswords bool
	// LogoutDevices logs out every device of an account whose password is reset.
	LogoutDevices bool
	// LeaveDropped makes an account leave the managed rooms the roster no longer
	// gives it (a person removed from a directory group, a room taken out of the
	// rooms column).
	LeaveDropped bool
	// ManagedRooms are the rooms provision may make people leave: those of the
	// rooms map, as it names them (IDs or aliases). A room not listed here is never
	// left, whatever the roster says.
	ManagedRooms []string
	// NoDisplayName: the account system cannot read display names (MAS without
	// Synapse's admin API), so Update neither compares nor changes them.
	NoDisplayName bool
}

// Action is what a change does.
type Action int

// The actions, in the order a plan counts them.
const (
	Create     Action = iota + 1 // the account does not exist: create it
	Update                       // the account exists and something about it changes
	Unchanged                    // the account exists and already matches (compared: Update is on)
	Exists                       // the account exists and is left alone (not compared)
	Deactivate                   // provision created it and the roster no longer names it
	Skip                         // in the roster, but provision will not touch it (see Note)
	Keep                         // not in the roster, provision created it, but it is kept (see Note)
)

var actionNames = map[Action]string{
	Create: "create", Update: "update", Unchanged: "unchanged", Exists: "exists",
	Deactivate: "deactivate", Skip: "skip", Keep: "keep",
}

func (a Action) String() string { return actionNames[a] }

// Field is one attribute that differs between the roster and the server.
type Field struct {
	Name     string // "displayname", "email" or "admin"
	Old, New string
}

// Change is what happens to one account.
type Change struct {
	Action Action
	UserID string
	// User is the roster's user; the zero User for Deactivate and Keep.
	User roster.User
	// Fields lists what an Update changes, in a fixed order.
	Fields []Field
	// Put is the request body for Create and Update, without a password (the batch
	// adds one for Create and for ResetPassword, after journaling it).
	Put matrix.PutUser
	// Joins are the rooms to join, as the roster names them.
	Joins []string
	// Leaves are the managed rooms to leave (see Options.LeaveDropped), as the
	// rooms map names them; LeaveIDs are their room IDs, in the same order.
	Leaves, LeaveIDs []string
	// ResetPassword: the account gets a new password.
	ResetPassword bool
	// LogoutDevices goes with ResetPassword.
	LogoutDevices bool
	// Erase goes with Deactivate.
	Erase bool
	// Note says why for Skip and Keep, and anything else the operator should know.
	Note string
}

// Account is what the server holds for a roster user.
type Account struct {
	// Exists is false when the server answered 404 for the user ID.
	Exists bool
	// User is the server's description of the account (GET /_synapse/admin/v2/users).
	User matrix.AdminUser
	// Rooms are the IDs of the rooms the account is joined to; nil when they were not
	// read (they are read only when Diff will compare them, see RoomsNeeded).
	Rooms []string
	// Aliases maps each room alias of the roster user, and of Options.ManagedRooms
	// when LeaveDropped is on, to its room ID, for those that resolved. An alias that
	// did not resolve is joined again (and the join reports why it fails); a managed
	// room whose alias does not resolve is never left.
	Aliases map[string]string
	// Resumed: an interrupted run of provision may have created this account; its
	// rooms are compared even without Update, so that the joins that run did not get
	// to are made.
	Resumed bool
}

// RoomsNeeded reports whether Diff will compare the account's rooms, so that the
// caller reads them (and resolves the roster's aliases) only when they matter.
func RoomsNeeded(u roster.User, acct Account, o Options) bool {
	if !acct.Exists || acct.User.Deactivated {
		return false
	}
	return len(u.Rooms) > 0 && (o.Update || acct.Resumed) || o.leaving()
}

func (o Options) leaving() bool { return o.LeaveDropped && len(o.ManagedRooms) > 0 }

// Diff decides what happens to the roster user u, whose full user ID is userID, given
// what the server holds. self is the admin token's own user ID: it is never demoted.
func Diff(u roster.User, userID, self string, acct Account, o Options) Change {
	c := Change{UserID: userID, User: u}
	if !acct.Exists {
		c.Action = Create
		c.Put = CreateBody(u, userID)
		c.Joins = slices.Clone(u.Rooms)
		return c
	}
	srv := acct.User
	if srv.Deactivated {
		c.Action = Skip
		c.Note = "deactivated on the server; provision never reactivates accounts (reactivate it by hand, with a new password, if the person is back)"
		return c
	}
	if o.Update {
		cu := u
		if o.NoDisplayName {
			cu.DisplayName = ""
		}
		c.Fields, c.Put = fieldChanges(cu, srv, userID == self)
		if userID == self && u.Admin != srv.Admin {
			c.Note = "the admin token's own account: its admin flag is never changed"
		}
	}
	if RoomsNeeded(u, acct, o) && (o.Update || acct.Resumed) {
		c.Joins = missingRooms(u.Rooms, acct.Rooms, acct.Aliases)
	}
	if RoomsNeeded(u, acct, o) && o.leaving() {
		c.Leaves, c.LeaveIDs = droppedRooms(u.Rooms, o.ManagedRooms, acct.Rooms, acct.Aliases)
	}
	if o.ResetPasswords {
		c.ResetPassword = true
		c.LogoutDevices = o.LogoutDevices
	}
	switch {
	case len(c.Fields) > 0 || len(c.Joins) > 0 || len(c.Leaves) > 0 || c.ResetPassword:
		c.Action = Update
	case o.Update:
		c.Action = Unchanged
	default:
		c.Action = Exists
	}
	return c
}

// CreateBody is everything the roster says about a new account, with the marker.
// A single sign-on user's external ID goes in the same list as the marker: Synapse's
// PUT replaces the whole set, so two requests would leave only the second.
func CreateBody(u roster.User, userID string) matrix.PutUser {
	ids := []matrix.ExternalID{Marker(userID)}
	if u.SSOSubject != "" {
		ids = append(ids, matrix.ExternalID{AuthProvider: u.SSOProvider, ExternalID: u.SSOSubject})
	}
	p := matrix.PutUser{
		ExternalIDs: &ids,
		Admin:       ptr(u.Admin),
	}
	if u.DisplayName != "" {
		p.DisplayName = ptr(u.DisplayName)
	}
	if u.Email != "" {
		p.ThreePIDs = &[]matrix.ThreePID{{Medium: "email", Address: canonicalEmail(u.Email)}}
	}
	if u.UserType != "" {
		p.UserType = ptr(u.UserType)
	}
	return p
}

// fieldChanges compares what --update manages. An empty roster cell means "not
// managed here", never "clear it": a roster without an email column must not wipe
// every address on the server. The admin flag has no empty state (the roster's
// default is false), so it is always compared, except on the token's own account,
// which Synapse refuses to demote and which provision must never lock out.
func fieldChanges(u roster.User, srv matrix.AdminUser, self bool) ([]Field, matrix.PutUser) {
	var fields []Field
	var p matrix.PutUser
	if u.DisplayName != "" && u.DisplayName != srv.DisplayName {
		fields = append(fields, Field{Name: "displayname", Old: srv.DisplayName, New: u.DisplayName})
		p.DisplayName = ptr(u.DisplayName)
	}
	if u.Email != "" {
		want := canonicalEmail(u.Email)
		var emails, others []matrix.ThreePID
		for _, t := range srv.ThreePIDs {
			if t.Medium == "email" {
				emails = append(emails, t)
			} else {
				others = append(others, t)
			}
		}
		if len(emails) != 1 || canonicalEmail(emails[0].Address) != want {
			old := make([]string, len(emails))
			for i, t := range emails {
				old[i] = t.Address
			}
			fields = append(fields, Field{Name: "email", Old: strings.Join(old, ", "), New: want})
			// threepids replaces the whole set: phone numbers are sent back as they are.
			set := append(others, matrix.ThreePID{Medium: "email", Address: want})
			p.ThreePIDs = &set
		}
	}
	if !self && u.Admin != srv.Admin {
		fields = append(fields, Field{Name: "admin", Old: boolText(srv.Admin), New: boolText(u.Admin)})
		p.Admin = ptr(u.Admin)
	}
	return fields, p
}

// missingRooms returns the roster's rooms the account is not joined to, in the
// roster's order.
func missingRooms(want, joined []string, aliases map[string]string) []string {
	var out []string
	for _, r := range want {
		id := r
		if strings.HasPrefix(r, "#") {
			id = aliases[r]
		}
		if id == "" || !slices.Contains(joined, id) {
			out = append(out, r)
		}
	}
	return out
}

// droppedRooms returns the managed rooms the account is joined to and the roster
// no longer gives it, in the map's order, with their IDs. A room is compared by ID, so
// that the roster naming it by alias and the map by ID (or the other way round) is
// one room.
func droppedRooms(want, managed, joined []string, aliases map[string]string) (names, ids []string) {
	idOf := func(r string) string {
		if strings.HasPrefix(r, "#") {
			return aliases[r]
		}
		return r
	}
	wanted := map[string]bool{}
	for _, r := range want {
		if id := idOf(r); id != "" {
			wanted[id] = true
		}
	}
	for _, r := range managed {
		id := idOf(r)
		if id == "" || wanted[id] || !slices.Contains(joined, id) || slices.Contains(ids, id) {
			continue
		}
		names = append(names, r)
		ids = append(ids, id)
	}
	return names, ids
}

// Missing decides what happens to an account the roster does not name. It returns
// false when the account is none of provision's business (not created by provision,
// or already deactivated): those are left out of the plan altogether.
func Missing(u matrix.AdminUser, self string, o Options) (Change, bool) {
	if !o.DeactivateMissing || u.Deactivated || !Marked(u) {
		return Change{}, false
	}
	c := Change{UserID: u.UserID}
	switch {
	case u.UserID == self:
		c.Action, c.Note = Keep, "the admin token's own account is never deactivated"
	case u.AppserviceID != "":
		c.Action, c.Note = Keep, "belongs to the application service "+u.AppserviceID+" (a bridge); provision never deactivates those"
	case u.Admin:
		c.Action, c.Note = Keep, "a server admin; provision never deactivates admins: remove it by hand if the person left"
	default:
		c.Action, c.Erase = Deactivate, o.Erase
	}
	return c, true
}

// canonicalEmail is the address as Synapse stores it: add_threepid lowercases email
// addresses, so comparing anything else would report a change on every run.
func canonicalEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func ptr[T any](v T) *T { return &v }
