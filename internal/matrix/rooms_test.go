package matrix_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
)

// Membership is read as room IDs and the roster names rooms by alias too: both
// calls are needed to tell whether a user still has to join a room.
func TestAdminJoinedRoomsAndAliases(t *testing.T) {
	t.Parallel()
	srv, a := newAdmin(t, matrixtest.Options{})
	srv.AddUser(matrixtest.FakeUser{Localpart: "alice"}, testPassword)
	srv.AddRoom("!general:example.org", "#general:example.org")
	srv.AddRoom("!ops:example.org", "")
	id := srv.UserID("alice")

	rooms, err := a.JoinedRooms(t.Context(), id)
	if err != nil || len(rooms) != 0 {
		t.Fatalf("JoinedRooms before any join = %v, %v", rooms, err)
	}
	for _, r := range []string{"#general:example.org", "!ops:example.org"} {
		if _, err := a.Join(t.Context(), r, id); err != nil {
			t.Fatal(err)
		}
	}
	rooms, err = a.JoinedRooms(t.Context(), id)
	if want := []string{"!general:example.org", "!ops:example.org"}; err != nil || !slices.Equal(rooms, want) {
		t.Errorf("JoinedRooms = %v, %v; want %v", rooms, err, want)
	}
	// Synapse answers an empty list for an unknown user, not 404.
	if rooms, err := a.JoinedRooms(t.Context(), srv.UserID("nobody")); err != nil || len(rooms) != 0 {
		t.Errorf("JoinedRooms(nobody) = %v, %v", rooms, err)
	}

	if id, err := a.ResolveAlias(t.Context(), "#general:example.org"); err != nil || id != "!general:example.org" {
		t.Errorf("ResolveAlias = %q, %v", id, err)
	}
	_, err = a.ResolveAlias(t.Context(), "#nowhere:example.org")
	if !errors.Is(err, matrix.ErrNotFound) || errors.Is(err, matrix.ErrNoAdminAPI) {
		t.Errorf("ResolveAlias(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := a.ResolveAlias(t.Context(), "!general:example.org"); !errors.Is(err, matrix.ErrInvalidRequest) {
		t.Errorf("ResolveAlias(room ID) = %v, want ErrInvalidRequest", err)
	}

	// Deactivation parts the user from every room (Synapse's user parter).
	if err := a.Deactivate(t.Context(), id, false); err != nil {
		t.Fatal(err)
	}
	if rooms, _ := a.JoinedRooms(t.Context(), id); len(rooms) != 0 {
		t.Errorf("rooms after deactivation: %v", rooms)
	}
}

func TestAdminJoinedRoomsNoAdminAPI(t *testing.T) {
	t.Parallel()
	srv, a := newAdmin(t, matrixtest.Options{Dialect: matrixtest.Dendrite, SharedSecret: testSecret})
	_, err := a.JoinedRooms(t.Context(), srv.UserID("alice"))
	assertIs(t, err, matrix.ErrNoAdminAPI)
	assertNoSecrets(t, err, testAdminToken)
}

func TestAdminGetUserAppservice(t *testing.T) {
	t.Parallel()
	// A hand-made Synapse answer (older versions sent 0/1 for booleans): the
	// fake has no application services.
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"name":"@irc_bob:example.org","admin":0,"deactivated":0,"appservice_id":"irc","external_ids":[]}`))
	}))
	t.Cleanup(hs.Close)
	c, err := matrix.NewClient(hs.URL, hs.Client())
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.Admin([]byte(testAdminToken)).GetUser(t.Context(), "@irc_bob:example.org")
	if err != nil || u.AppserviceID != "irc" || u.Admin {
		t.Errorf("GetUser = %+v, %v; want appservice irc", u, err)
	}
}
