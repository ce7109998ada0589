package reconcile

import (
	"slices"
	"testing"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/roster"
)

func TestLeaves(t *testing.T) {
	t.Parallel()
	managed := []string{"#staff:hs", "!eng:hs"}
	aliases := map[string]string{"#staff:hs": "!staff:hs"}
	acct := func(joined ...string) Account {
		return Account{Exists: true, User: matrix.AdminUser{UserID: "@u:hs"}, Rooms: joined, Aliases: aliases}
	}
	for _, tc := range []struct {
		name   string
		rooms  []string // the roster's
		acct   Account
		o      Options
		leaves []string
		action Action
	}{
		{"dropped from a group", []string{"!eng:hs"}, acct("!eng:hs", "!staff:hs"), Options{LeaveDropped: true, ManagedRooms: managed}, []string{"#staff:hs"}, Update},
		{"in no group any more", nil, acct("!eng:hs", "!staff:hs"), Options{LeaveDropped: true, ManagedRooms: managed}, []string{"#staff:hs", "!eng:hs"}, Update},
		{"a room of their own is never left", nil, acct("!mine:hs"), Options{LeaveDropped: true, ManagedRooms: managed}, nil, Exists},
		{"still given by alias, joined by ID", []string{"#staff:hs"}, acct("!staff:hs"), Options{LeaveDropped: true, ManagedRooms: managed}, nil, Exists},
		{"not joined, nothing to leave", nil, acct(), Options{LeaveDropped: true, ManagedRooms: managed}, nil, Exists},
		{"without --leave-dropped-rooms", nil, acct("!staff:hs"), Options{ManagedRooms: managed}, nil, Exists},
		{"an alias that does not resolve is never left", nil, Account{Exists: true, Rooms: []string{"!staff:hs"}}, Options{LeaveDropped: true, ManagedRooms: managed}, nil, Exists},
		{"deactivated accounts are skipped", nil, Account{Exists: true, User: matrix.AdminUser{Deactivated: true}, Rooms: []string{"!eng:hs"}}, Options{LeaveDropped: true, ManagedRooms: managed}, nil, Skip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := roster.User{Localpart: "u", Rooms: tc.rooms}
			if got := RoomsNeeded(u, tc.acct, tc.o); got != (tc.o.LeaveDropped && !tc.acct.User.Deactivated) {
				t.Errorf("RoomsNeeded = %v", got)
			}
			c := Diff(u, "@u:hs", "@admin:hs", tc.acct, tc.o)
			if !slices.Equal(c.Leaves, tc.leaves) || c.Action != tc.action || len(c.LeaveIDs) != len(c.Leaves) {
				t.Errorf("Diff: leaves %v (%v), action %v; want %v, %v", c.Leaves, c.LeaveIDs, c.Action, tc.leaves, tc.action)
			}
		})
	}
}
