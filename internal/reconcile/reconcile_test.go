package reconcile

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/roster"
)

const (
	hs   = "example.org"
	self = "@admin:example.org"
)

func id(lp string) string { return "@" + lp + ":" + hs }

func email(a string) matrix.ThreePID { return matrix.ThreePID{Medium: "email", Address: a} }

// existing is an account as Synapse describes it.
func existing(lp, name string, tps ...matrix.ThreePID) Account {
	return Account{Exists: true, User: matrix.AdminUser{UserID: id(lp), DisplayName: name, ThreePIDs: tps}}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	bob := roster.User{Localpart: "bob", DisplayName: "Bob", Email: "bob@example.org"}
	update := Options{Update: true}
	tests := []struct {
		name     string
		user     roster.User
		acct     Account
		opts     Options
		userID   string // default: id(user.Localpart)
		action   Action
		fields   []Field
		joins    []string
		put      string // the PutUser body as JSON-ish text, "" for none
		reset    bool
		noteHas  string
		wantNote bool
	}{
		{name: "absent: created with everything the roster says and the marker",
			user:   roster.User{Localpart: "ann", DisplayName: "Ann", Email: "Ann@Example.org", Admin: true, UserType: "bot", Rooms: []string{"#a:hs", "!b:hs"}},
			action: Create, joins: []string{"#a:hs", "!b:hs"},
			put: `displayname=Ann threepids=[{email ann@example.org}] external_ids=[{provision @ann:example.org}] admin=true user_type=bot`},
		{name: "absent, bare roster row: nothing empty is sent",
			user:   roster.User{Localpart: "cy"},
			action: Create, put: `external_ids=[{provision @cy:example.org}] admin=false`},
		{name: "exists, no --update: left alone, not even compared",
			user: bob, acct: existing("bob", "B"), action: Exists},
		{name: "exists and matches",
			user: bob, acct: existing("bob", "Bob", email("bob@example.org")), opts: update, action: Unchanged},
		{name: "email differs only in case: Synapse lowercases, so it matches",
			user: roster.User{Localpart: "bob", Email: "BOB@example.org"}, acct: existing("bob", "Bob", email("bob@example.org")), opts: update, action: Unchanged},
		{name: "display name changed",
			user: bob, acct: existing("bob", "B", email("bob@example.org")), opts: update, action: Update,
			fields: []Field{{"displayname", "B", "Bob"}}, put: `displayname=Bob`},
		{name: "email changed: the phone number is kept",
			user: bob, acct: existing("bob", "Bob", email("old@example.org"), matrix.ThreePID{Medium: "msisdn", Address: "447700900123"}), opts: update, action: Update,
			fields: []Field{{"email", "old@example.org", "bob@example.org"}}, put: `threepids=[{msisdn 447700900123} {email bob@example.org}]`},
		{name: "email added",
			user: bob, acct: existing("bob", "Bob"), opts: update, action: Update,
			fields: []Field{{"email", "", "bob@example.org"}}, put: `threepids=[{email bob@example.org}]`},
		{name: "two addresses on the server, one in the roster",
			user: bob, acct: existing("bob", "Bob", email("bob@example.org"), email("b@example.org")), opts: update, action: Update,
			fields: []Field{{"email", "bob@example.org, b@example.org", "bob@example.org"}}, put: `threepids=[{email bob@example.org}]`},
		{name: "empty cells never clear what the server has",
			user: roster.User{Localpart: "bob"}, acct: existing("bob", "Robert", email("bob@example.org")), opts: update, action: Unchanged},
		{name: "admin granted",
			user: roster.User{Localpart: "bob", Admin: true}, acct: existing("bob", "Bob"), opts: update, action: Update,
			fields: []Field{{"admin", "false", "true"}}, put: `admin=true`},
		{name: "the token's own account is never demoted",
			user: roster.User{Localpart: "admin"},
			acct: Account{Exists: true, User: matrix.AdminUser{UserID: self, Admin: true}},
			opts: update, action: Unchanged, noteHas: "own account", wantNote: true},
		{name: "deactivated on the server: skipped, never reactivated",
			user: bob, acct: Account{Exists: true, User: matrix.AdminUser{UserID: id("bob"), Deactivated: true}}, opts: update,
			action: Skip, noteHas: "never reactivates", wantNote: true},
		{name: "rooms: only the ones not joined yet, aliases compared by room ID",
			user: roster.User{Localpart: "bob", Rooms: []string{"#general:hs", "!ops:hs", "#new:hs"}},
			acct: Account{Exists: true, User: matrix.AdminUser{UserID: id("bob")}, Rooms: []string{"!gen:hs", "!ops:hs"},
				Aliases: map[string]string{"#general:hs": "!gen:hs", "#new:hs": "!new:hs"}},
			opts: update, action: Update, joins: []string{"#new:hs"}},
		{name: "rooms: an alias that did not resolve is joined (and the join says why it fails)",
			user: roster.User{Localpart: "bob", Rooms: []string{"#gone:hs"}},
			acct: Account{Exists: true, User: matrix.AdminUser{UserID: id("bob")}, Rooms: []string{}},
			opts: update, action: Update, joins: []string{"#gone:hs"}},
		{name: "rooms without --update: not compared",
			user: roster.User{Localpart: "bob", Rooms: []string{"!ops:hs"}},
			acct: Account{Exists: true, User: matrix.AdminUser{UserID: id("bob")}}, action: Exists},
		{name: "an account an interrupted run created gets its missing joins even without --update",
			user:   roster.User{Localpart: "bob", Rooms: []string{"!ops:hs", "!dev:hs"}},
			acct:   Account{Exists: true, User: matrix.AdminUser{UserID: id("bob")}, Rooms: []string{"!ops:hs"}, Resumed: true},
			action: Update, joins: []string{"!dev:hs"}},
		{name: "--reset-passwords",
			user: bob, acct: existing("bob", "Bob", email("bob@example.org")), opts: Options{ResetPasswords: true, LogoutDevices: true},
			action: Update, reset: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			uid := tt.userID
			if uid == "" {
				uid = id(tt.user.Localpart)
			}
			if tt.acct.Exists && tt.acct.User.UserID == "" {
				tt.acct.User.UserID = uid
			}
			c := Diff(tt.user, uid, self, tt.acct, tt.opts)
			if c.Action != tt.action {
				t.Fatalf("action %v, want %v (%+v)", c.Action, tt.action, c)
			}
			if c.UserID != uid || c.User.Localpart != tt.user.Localpart {
				t.Errorf("change is for %s/%s", c.UserID, c.User.Localpart)
			}
			if !slices.Equal(c.Fields, tt.fields) {
				t.Errorf("fields %v, want %v", c.Fields, tt.fields)
			}
			if !slices.Equal(c.Joins, tt.joins) {
				t.Errorf("joins %v, want %v", c.Joins, tt.joins)
			}
			if got := putText(c.Put); got != tt.put {
				t.Errorf("put %q, want %q", got, tt.put)
			}
			if c.ResetPassword != tt.reset || c.LogoutDevices != (tt.reset && tt.opts.LogoutDevices) {
				t.Errorf("reset %v/%v", c.ResetPassword, c.LogoutDevices)
			}
			if c.Put.Password != nil {
				t.Error("Diff put a password in the body: only the batch may, after journaling it")
			}
			if (c.Note != "") != tt.wantNote || !strings.Contains(c.Note, tt.noteHas) {
				t.Errorf("note %q, want one containing %q", c.Note, tt.noteHas)
			}
		})
	}
}

// putText renders the fields a PutUser sends.
func putText(p matrix.PutUser) string {
	var parts []string
	if p.DisplayName != nil {
		parts = append(parts, "displayname="+*p.DisplayName)
	}
	if p.ThreePIDs != nil {
		parts = append(parts, fmt.Sprintf("threepids=%v", *p.ThreePIDs))
	}
	if p.ExternalIDs != nil {
		parts = append(parts, fmt.Sprintf("external_ids=%v", *p.ExternalIDs))
	}
	if p.Admin != nil {
		parts = append(parts, fmt.Sprintf("admin=%v", *p.Admin))
	}
	if p.UserType != nil {
		parts = append(parts, "user_type="+*p.UserType)
	}
	if p.LogoutDevices != nil || p.Deactivated != nil || p.Locked != nil || p.AvatarURL != nil {
		parts = append(parts, "UNEXPECTED")
	}
	return strings.Join(parts, " ")
}

func TestMissing(t *testing.T) {
	t.Parallel()
	marked := func(lp string) matrix.AdminUser {
		return matrix.AdminUser{UserID: id(lp), ExternalIDs: []matrix.ExternalID{{AuthProvider: "oidc-corp", ExternalID: "x"}, Marker(id(lp))}}
	}
	on := Options{DeactivateMissing: true}
	tests := []struct {
		name    string
		user    matrix.AdminUser
		opts    Options
		listed  bool
		action  Action
		erase   bool
		noteHas string
	}{
		{name: "created by provision: deactivated", user: marked("cy"), opts: on, listed: true, action: Deactivate},
		{name: "with --erase", user: marked("cy"), opts: Options{DeactivateMissing: true, Erase: true}, listed: true, action: Deactivate, erase: true},
		{name: "without --deactivate-missing: none of its business", user: marked("cy"), opts: Options{}},
		{name: "not created by provision (a bot, a bridge, the admin)", user: matrix.AdminUser{UserID: id("bot")}, opts: on},
		{name: "an SSO account", user: matrix.AdminUser{UserID: id("sso"), ExternalIDs: []matrix.ExternalID{{AuthProvider: "oidc", ExternalID: "sso"}}}, opts: on},
		{name: "a marker for another user ID does not count",
			user: matrix.AdminUser{UserID: id("eve"), ExternalIDs: []matrix.ExternalID{Marker(id("cy"))}}, opts: on},
		{name: "already deactivated", user: func() matrix.AdminUser { u := marked("cy"); u.Deactivated = true; return u }(), opts: on},
		{name: "the token's own account", user: func() matrix.AdminUser { u := marked("admin"); return u }(), opts: on, listed: true, action: Keep, noteHas: "own account"},
		{name: "a server admin", user: func() matrix.AdminUser { u := marked("root"); u.Admin = true; return u }(), opts: on, listed: true, action: Keep, noteHas: "never deactivates admins"},
		{name: "an application service's account", user: func() matrix.AdminUser { u := marked("irc_x"); u.AppserviceID = "irc"; return u }(), opts: on, listed: true, action: Keep, noteHas: "irc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, listed := Missing(tt.user, self, tt.opts)
			if listed != tt.listed {
				t.Fatalf("listed = %v, want %v", listed, tt.listed)
			}
			if !listed {
				return
			}
			if c.Action != tt.action || c.Erase != tt.erase || c.UserID != tt.user.UserID || !strings.Contains(c.Note, tt.noteHas) {
				t.Errorf("change %+v, want %v erase=%v note~%q", c, tt.action, tt.erase, tt.noteHas)
			}
		})
	}
}

func TestCheckLimit(t *testing.T) {
	t.Parallel()
	plan := func(n, max int) *Plan {
		p := &Plan{Options: Options{DeactivateMissing: true, MaxDeactivate: max}}
		for i := range n {
			p.Changes = append(p.Changes, Change{Action: Deactivate, UserID: id(fmt.Sprint("u", i))})
		}
		p.Changes = append(p.Changes, Change{Action: Keep}, Change{Action: Create})
		return p
	}
	tests := []struct {
		n, max int
		fail   bool
	}{
		{0, 0, false}, {1, 0, true}, {10, 10, false}, {11, 10, true}, {500, -1, false},
	}
	for _, tt := range tests {
		err := plan(tt.n, tt.max).CheckLimit()
		var le *LimitError
		if (err != nil) != tt.fail || (tt.fail && (!errors.As(err, &le) || le.Count != tt.n || le.Max != tt.max)) {
			t.Errorf("%d deactivations, max %d: %v", tt.n, tt.max, err)
		}
		if tt.fail && !strings.Contains(err.Error(), fmt.Sprintf("%d accounts", tt.n)) {
			t.Errorf("message %q does not say how many", err)
		}
	}
}

func TestPlanText(t *testing.T) {
	t.Parallel()
	p := &Plan{Options: Options{Update: true, DeactivateMissing: true}, Changes: []Change{
		{Action: Create, UserID: id("ann"), User: roster.User{Localpart: "ann"}, Joins: []string{"#general:example.org"}},
		{Action: Create, UserID: id("ci"), User: roster.User{Localpart: "ci", Admin: true, UserType: "bot"}},
		{Action: Update, UserID: id("bob"), Fields: []Field{{"displayname", "B", "Bob"}, {"email", "", "bob@example.org"}, {"admin", "false", "true"}},
			Joins: []string{"!ops:example.org"}},
		{Action: Update, UserID: id("dan"), ResetPassword: true, LogoutDevices: true},
		{Action: Update, UserID: id("eve"), Fields: []Field{{"displayname", "Eve", "Eve \x1b[31mRed"}}},
		{Action: Unchanged, UserID: id("fay")},
		{Action: Skip, UserID: id("gil"), Note: "deactivated on the server"},
		{Action: Deactivate, UserID: id("cy")},
		{Action: Deactivate, UserID: id("cz"), Erase: true},
		{Action: Keep, UserID: id("root"), Note: "a server admin"},
	}}
	var b strings.Builder
	if err := p.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `+ @ann:example.org  create
+ @ann:example.org  join #general:example.org
+ @ci:example.org  create (server admin, bot)
~ @bob:example.org  displayname "B" -> "Bob"
~ @bob:example.org  email "" -> "bob@example.org"
~ @bob:example.org  admin false -> true
~ @bob:example.org  join !ops:example.org
~ @dan:example.org  password reset (logs out every device)
~ @eve:example.org  displayname "Eve" -> "Eve \x1b[31mRed"
! @gil:example.org  skip: deactivated on the server
- @cy:example.org  deactivate
- @cz:example.org  deactivate and erase
! @root:example.org  keep: a server admin

2 to create, 3 to update, 2 to deactivate, 1 unchanged, 1 skipped, 1 kept
`
	if b.String() != want {
		t.Errorf("plan text:\n%s\nwant:\n%s", b.String(), want)
	}

	empty := &Plan{Changes: []Change{{Action: Exists}, {Action: Exists}}}
	b.Reset()
	_ = empty.WriteText(&b)
	if got := b.String(); got != "0 to create, 0 to update, 0 to deactivate, 2 existing not compared (pass --update to compare them)\n" {
		t.Errorf("empty plan: %q", got)
	}
}
