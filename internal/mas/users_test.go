package mas_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/provision-matrix/provision/internal/mas"
	"github.com/provision-matrix/provision/internal/mastest"
	"github.com/provision-matrix/provision/internal/matrix"
)

func TestCreateUserSetPassword(t *testing.T) {
	t.Parallel()
	srv, c := newServer(t, mastest.Options{})
	u, err := c.CreateUser(ctx(t), "alice", mas.CreateOptions{DisplayName: "Alice"})
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "alice" || u.ID == "" || u.Admin || u.Locked() || u.Deactivated() || u.CreatedAt.IsZero() {
		t.Errorf("created user = %+v", u)
	}
	if err := c.SetPassword(ctx(t), u.ID, goodPassword, false); err != nil {
		t.Fatal(err)
	}
	if !srv.CheckPassword("alice", goodPassword) {
		t.Error("the password was not set")
	}
	got, err := c.UserByUsername(ctx(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != u.ID {
		t.Errorf("UserByUsername ID = %s, want %s", got.ID, u.ID)
	}
	if n := srv.RequestCount("POST /oauth2/token"); n != 1 {
		t.Errorf("token requests = %d, want 1 (the token is reused)", n)
	}
}

func TestCreateUserRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		username string
		want     error
	}{
		{"exists", "alice", mas.ErrUserExists},
		{"exists in another case", "Alice", mas.ErrUserExists},
		{"uppercase", "Bob", mas.ErrInvalidUsername},
		{"leading underscore", "_bob", mas.ErrInvalidUsername},
		{"space", "bob smith", mas.ErrInvalidUsername},
		{"empty", "", mas.ErrInvalidUsername},
		{"reserved by the homeserver", "bridgebot", mas.ErrUsernameReserved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, c := newServer(t, mastest.Options{ReservedUsernames: []string{"bridgebot"}})
			srv.AddUser(mastest.FakeUser{Username: "alice"})
			_, err := c.CreateUser(ctx(t), tt.username, mas.CreateOptions{})
			assertIs(t, err, tt.want)
			assertKind(t, err, matrix.Refused)
			if mas.MayHaveLanded(err) {
				t.Error("MayHaveLanded = true for a refusal")
			}
			var e *mas.Error
			if !errors.As(err, &e) || len(e.Titles) == 0 {
				t.Errorf("error %v carries no MAS titles", err)
			}
			if got := srv.Usernames(); len(got) != 1 {
				t.Errorf("users after a refusal = %v", got)
			}
		})
	}
}

func TestUserByUsernameNotFound(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, mastest.Options{})
	_, err := c.UserByUsername(ctx(t), "nobody")
	assertIs(t, err, mas.ErrNotFound)
	assertKind(t, err, matrix.Refused)
	if !strings.Contains(err.Error(), `User with username "nobody" not found`) {
		t.Errorf("error %q does not repeat MAS's title", err)
	}
}

func TestUserByUsernameCaseInsensitive(t *testing.T) {
	t.Parallel()
	srv, c := newServer(t, mastest.Options{})
	id := srv.AddUser(mastest.FakeUser{Username: "alice"})
	u, err := c.UserByUsername(ctx(t), "ALICE")
	if err != nil || u.ID != id {
		t.Errorf("UserByUsername(ALICE) = %+v, %v; want alice's account", u, err)
	}
}

func TestSetPasswordRefusals(t *testing.T) {
	t.Parallel()
	const weak = "hunter2"
	t.Run("too weak", func(t *testing.T) {
		t.Parallel()
		srv, c := newServer(t, mastest.Options{})
		id := srv.AddUser(mastest.FakeUser{Username: "alice"})
		err := c.SetPassword(ctx(t), id, weak, false)
		assertIs(t, err, mas.ErrWeakPassword)
		assertKind(t, err, matrix.Refused)
		assertNoSecrets(t, err, weak, srv.ClientSecret())
		if srv.CheckPassword("alice", weak) {
			t.Error("a refused password was set")
		}
	})
	t.Run("too weak but check skipped", func(t *testing.T) {
		t.Parallel()
		srv, c := newServer(t, mastest.Options{})
		id := srv.AddUser(mastest.FakeUser{Username: "alice"})
		if err := c.SetPassword(ctx(t), id, weak, true); err != nil {
			t.Fatal(err)
		}
		if !srv.CheckPassword("alice", weak) {
			t.Error("the password was not set")
		}
	})
	t.Run("passwords disabled", func(t *testing.T) {
		t.Parallel()
		srv, c := newServer(t, mastest.Options{PasswordsDisabled: true})
		id := srv.AddUser(mastest.FakeUser{Username: "alice"})
		err := c.SetPassword(ctx(t), id, goodPassword, false)
		assertIs(t, err, mas.ErrPasswordsDisabled)
		assertKind(t, err, matrix.Permanent)
		assertNoSecrets(t, err, goodPassword)
	})
	t.Run("no such user", func(t *testing.T) {
		t.Parallel()
		_, c := newServer(t, mastest.Options{})
		err := c.SetPassword(ctx(t), "01040G2081040G2081040G2081", goodPassword, false)
		assertIs(t, err, mas.ErrNotFound)
		assertNoSecrets(t, err, goodPassword)
	})
	t.Run("not a ULID", func(t *testing.T) {
		t.Parallel()
		_, c := newServer(t, mastest.Options{})
		err := c.SetPassword(ctx(t), "alice", goodPassword, false)
		if mas.Status(err) != 400 || errors.Is(err, mas.ErrNotFound) {
			t.Errorf("error %v: want a 400 that is not ErrNotFound", err)
		}
	})
}

func TestAdminDeactivateReactivate(t *testing.T) {
	t.Parallel()
	srv, c := newServer(t, mastest.Options{})
	id := srv.AddUser(mastest.FakeUser{Username: "alice"})

	u, err := c.SetAdmin(ctx(t), id, true)
	if err != nil || !u.Admin {
		t.Fatalf("SetAdmin = %+v, %v", u, err)
	}
	u, err = c.Deactivate(ctx(t), id, true)
	if err != nil || !u.Deactivated() {
		t.Fatalf("Deactivate = %+v, %v", u, err)
	}
	st, _ := srv.User("alice")
	if !st.Deactivated || st.Erased || !st.Admin {
		t.Errorf("after deactivate with skipErase: %+v", st)
	}
	// A second deactivation succeeds and keeps the first timestamp.
	again, err := c.Deactivate(ctx(t), id, false)
	if err != nil || !again.DeactivatedAt.Equal(u.DeactivatedAt) {
		t.Errorf("second Deactivate = %+v, %v", again, err)
	}
	if st, _ := srv.User("alice"); !st.Erased {
		t.Error("deactivation without skipErase did not ask for erasure")
	}
	u, err = c.Reactivate(ctx(t), id)
	if err != nil || u.Deactivated() {
		t.Fatalf("Reactivate = %+v, %v", u, err)
	}
	_, err = c.Reactivate(ctx(t), "01040G2081040G2081040G2081")
	assertIs(t, err, mas.ErrNotFound)
}

func TestListUsersPages(t *testing.T) {
	t.Parallel()
	srv, c := newServer(t, mastest.Options{})
	var want []string
	for i := range 25 {
		name := fmt.Sprintf("user%02d", i)
		srv.AddUser(mastest.FakeUser{Username: name})
		want = append(want, name)
	}
	var got []string
	after, pages := "", 0
	for {
		users, next, err := c.ListUsers(ctx(t), after, 10)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, u := range users {
			got = append(got, u.Username)
		}
		if next == "" {
			break
		}
		after = next
	}
	if pages != 3 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("ListUsers: %d pages, users %v; want 3 pages of %v", pages, got, want)
	}
	var each []string
	if err := c.EachUser(ctx(t), 7, func(u mas.User) error { each = append(each, u.Username); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(each, ",") != strings.Join(want, ",") {
		t.Errorf("EachUser saw %v", each)
	}
}

func TestListUsersEmpty(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, mastest.Options{})
	users, next, err := c.ListUsers(ctx(t), "", 0)
	if err != nil || len(users) != 0 || next != "" {
		t.Errorf("ListUsers on an empty MAS = %v, %q, %v", users, next, err)
	}
}

func TestAddEmail(t *testing.T) {
	t.Parallel()
	srv, c := newServer(t, mastest.Options{})
	alice := srv.AddUser(mastest.FakeUser{Username: "alice"})
	bob := srv.AddUser(mastest.FakeUser{Username: "bob"})

	if err := c.AddEmail(ctx(t), alice, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	// MAS answers 409 for an address the user already has: that is done.
	if err := c.AddEmail(ctx(t), alice, "Alice@Example.org"); err != nil {
		t.Errorf("adding alice's own address again: %v", err)
	}
	err := c.AddEmail(ctx(t), bob, "alice@example.org")
	assertIs(t, err, mas.ErrEmailInUse)
	assertKind(t, err, matrix.Refused)
	if !strings.Contains(err.Error(), alice) {
		t.Errorf("error %q does not name the address's owner", err)
	}
	err = c.AddEmail(ctx(t), bob, "not an address")
	assertIs(t, err, mas.ErrInvalidEmail)
	err = c.AddEmail(ctx(t), "01040G2081040G2081040G2081", "x@example.org")
	assertIs(t, err, mas.ErrNotFound)

	if st, _ := srv.User("alice"); len(st.Emails) != 1 {
		t.Errorf("alice's addresses = %v, want one", st.Emails)
	}
	if st, _ := srv.User("bob"); len(st.Emails) != 0 {
		t.Errorf("bob's addresses = %v, want none", st.Emails)
	}
}

func TestUpstreamProvidersPages(t *testing.T) {
	t.Parallel()
	var ps []mastest.Provider
	for i := range 150 {
		ps = append(ps, mastest.Provider{HumanName: fmt.Sprintf("idp%03d", i), Disabled: i == 3})
	}
	ps[0].Issuer, ps[0].BrandName = "https://accounts.google.com", "google"
	srv, c := newServer(t, mastest.Options{Providers: ps})
	got, err := c.UpstreamProviders(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 150 {
		t.Fatalf("got %d providers, want 150", len(got))
	}
	if n := srv.RequestCount("GET /api/admin/v1/upstream-oauth-providers"); n != 2 {
		t.Errorf("provider list requests = %d, want 2 pages", n)
	}
	disabled, google := 0, 0
	for _, p := range got {
		if !p.Enabled() {
			disabled++
		}
		if p.Issuer == "https://accounts.google.com" && p.BrandName == "google" {
			google++
		}
	}
	if disabled != 1 || google != 1 {
		t.Errorf("disabled = %d, google = %d; want 1 and 1", disabled, google)
	}
}

func TestAddUpstreamLink(t *testing.T) {
	t.Parallel()
	srv, c := newServer(t, mastest.Options{Providers: []mastest.Provider{{HumanName: "Okta"}}})
	idp := srv.Providers()[0]
	alice := srv.AddUser(mastest.FakeUser{Username: "alice"})
	bob := srv.AddUser(mastest.FakeUser{Username: "bob"})

	if err := c.AddUpstreamLink(ctx(t), alice, idp, "00uA", "alice@corp"); err != nil {
		t.Fatal(err)
	}
	// MAS answers 409 for a link that already points at this user: done.
	if err := c.AddUpstreamLink(ctx(t), alice, idp, "00uA", ""); err != nil {
		t.Errorf("linking alice again: %v", err)
	}
	err := c.AddUpstreamLink(ctx(t), bob, idp, "00uA", "")
	assertIs(t, err, mas.ErrLinkConflict)
	assertKind(t, err, matrix.Refused)
	if srv.LinkedUser(idp, "00uA") != "alice" {
		t.Error("a conflicting link moved the subject")
	}
	// A link without a user (an unfinished upstream login) is attached: 200.
	srv.AddUnlinkedLink(idp, "00uB")
	if err := c.AddUpstreamLink(ctx(t), bob, idp, "00uB", ""); err != nil {
		t.Fatal(err)
	}
	if got := srv.LinkedUser(idp, "00uB"); got != "bob" {
		t.Errorf("subject 00uB linked to %q, want bob", got)
	}
	err = c.AddUpstreamLink(ctx(t), bob, "01040G2081040G2081040G2081", "00uC", "")
	assertIs(t, err, mas.ErrNotFound)
}

func TestSiteConfig(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, mastest.Options{ServerName: "corp.example", PasswordsDisabled: true})
	sc, err := c.SiteConfig(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if sc.ServerName != "corp.example" || sc.PasswordLoginEnabled || sc.MinimumPasswordComplexity != 3 {
		t.Errorf("SiteConfig = %+v", sc)
	}
}
