package matrixtest_test

import (
	"reflect"
	"testing"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
)

func ext(pairs ...string) []matrix.ExternalID {
	out := []matrix.ExternalID{}
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, matrix.ExternalID{AuthProvider: pairs[i], ExternalID: pairs[i+1]})
	}
	return out
}

func extBody(pairs ...string) []map[string]string {
	out := []map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, map[string]string{"auth_provider": pairs[i], "external_id": pairs[i+1]})
	}
	return out
}

// An SSO-only account: made with external_ids and no password, it cannot
// log in with a password, and the SSO login lands on it.
func TestSSOOnlyAccount(t *testing.T) {
	t.Parallel()
	srv := matrixtest.NewServer(t, matrixtest.Options{AdminToken: "tok"})
	a := call(t, srv, "PUT", "/_synapse/admin/v2/users/@alice:example.org", "tok", map[string]any{
		"displayname": "Alice", "external_ids": extBody("oidc-okta", "00uA")})
	want(t, a, 201, "")
	ids, _ := a.body["external_ids"].([]any)
	if len(ids) != 1 || !reflect.DeepEqual(ids[0], map[string]any{"auth_provider": "oidc-okta", "external_id": "00uA"}) {
		t.Errorf("external_ids in the answer = %v", a.body["external_ids"])
	}
	u, _ := srv.User("alice")
	if u.HasPassword || u.Devices != 0 || !reflect.DeepEqual(u.ExternalIDs, ext("oidc-okta", "00uA")) {
		t.Errorf("alice = %+v", u)
	}
	for _, pw := range []string{"", "anything"} {
		a := call(t, srv, "POST", "/_matrix/client/v3/login", "", map[string]any{
			"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": pw})
		want(t, a, 403, "M_FORBIDDEN")
		if a.str("error") != "Invalid username or password" {
			t.Errorf("login error = %q", a.str("error"))
		}
	}
	if id, ok := srv.SSOLogin("oidc-okta", "00uA"); !ok || id != "@alice:example.org" {
		t.Errorf("SSOLogin = %q, %v", id, ok)
	}
	// Exact matches only, as the store's lookup is.
	for _, c := range [][2]string{{"oidc-okta", "00ua"}, {"oidc", "00uA"}, {"oidc-okta", ""}} {
		if id, ok := srv.SSOLogin(c[0], c[1]); ok || id != "" {
			t.Errorf("SSOLogin(%q, %q) = %q, %v", c[0], c[1], id, ok)
		}
	}
}

// What the admin PUT does with external_ids, after on_PUT in
// synapse/rest/admin/users.py and the store's record_user_external_id and
// replace_user_external_id.
func TestAdminPutExternalIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// bob holds ("oidc", "taken") before; alice exists when exists.
		exists     bool
		body       map[string]any
		status     int
		errcode    string
		message    string
		aliceIDs   []matrix.ExternalID // after; nil = no alice
		aliceName  string
		alicePass  bool
		aliceAvURL string
	}{
		{name: "create", body: map[string]any{"external_ids": extBody("oidc", "a", "saml", "a")},
			status: 201, aliceIDs: ext("oidc", "a", "saml", "a"), aliceName: "alice"},
		{name: "create: taken by another account, after the account exists", body: map[string]any{
			"displayname": "Alice", "avatar_url": "mxc://x/y", "external_ids": extBody("saml", "a", "oidc", "taken", "cas", "a")},
			status: 409, errcode: "M_UNKNOWN", message: "External id is already in use.",
			aliceIDs: ext("saml", "a"), aliceName: "Alice"},
		{name: "create: two IDs at one provider", body: map[string]any{"external_ids": extBody("oidc", "a", "oidc", "b")},
			status: 201, aliceIDs: ext("oidc", "a", "oidc", "b"), aliceName: "alice"},
		{name: "create: one ID twice is recorded once", body: map[string]any{"external_ids": extBody("oidc", "a", "oidc", "a")},
			status: 201, aliceIDs: ext("oidc", "a"), aliceName: "alice"},
		{name: "create: an ID again after another at its provider", body: map[string]any{"external_ids": extBody("oidc", "a", "oidc", "b", "oidc", "b")},
			status: 409, errcode: "M_UNKNOWN", message: "External id is already in use.", aliceIDs: ext("oidc", "a", "oidc", "b"), aliceName: "alice"},
		{name: "create with a password", body: map[string]any{"password": "pw", "external_ids": extBody("oidc", "a")},
			status: 201, aliceIDs: ext("oidc", "a"), aliceName: "alice", alicePass: true},
		{name: "modify: replaces the set", exists: true, body: map[string]any{"external_ids": extBody("cas", "c")},
			status: 200, aliceIDs: ext("cas", "c"), aliceName: "Alice Old"},
		{name: "modify: empty list removes all", exists: true, body: map[string]any{"external_ids": []any{}},
			status: 200, aliceIDs: ext(), aliceName: "Alice Old"},
		{name: "modify: absent keeps", exists: true, body: map[string]any{"displayname": "New"},
			status: 200, aliceIDs: ext("oidc", "old", "saml", "old"), aliceName: "New"},
		{name: "modify: re-sending own IDs", exists: true, body: map[string]any{"external_ids": extBody("saml", "old", "oidc", "old")},
			status: 200, aliceIDs: ext("saml", "old", "oidc", "old"), aliceName: "Alice Old"},
		{name: "modify: taken rolls back the set but not the display name", exists: true,
			body:   map[string]any{"displayname": "New", "avatar_url": "mxc://x/y", "external_ids": extBody("cas", "c", "oidc", "taken")},
			status: 409, errcode: "M_UNKNOWN", message: "External id is already in use.",
			aliceIDs: ext("oidc", "old", "saml", "old"), aliceName: "New"},
		{name: "missing external_id", body: map[string]any{"external_ids": []any{map[string]any{"auth_provider": "oidc"}}},
			status: 400, errcode: "M_MISSING_PARAM", message: "Missing params: ['external_id']"},
		{name: "missing both", body: map[string]any{"external_ids": []any{map[string]any{}}},
			status: 400, errcode: "M_MISSING_PARAM", message: "Missing params: ['auth_provider', 'external_id']"},
		{name: "missing: nothing changes", exists: true, body: map[string]any{"displayname": "New", "external_ids": []any{map[string]any{"external_id": "x"}}},
			status: 400, errcode: "M_MISSING_PARAM", message: "Missing params: ['auth_provider']",
			aliceIDs: ext("oidc", "old", "saml", "old"), aliceName: "Alice Old"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := matrixtest.NewServer(t, matrixtest.Options{AdminToken: "tok"})
			srv.AddUser(matrixtest.FakeUser{Localpart: "bob", ExternalIDs: ext("oidc", "taken")}, "")
			if tc.exists {
				srv.AddUser(matrixtest.FakeUser{Localpart: "alice", DisplayName: "Alice Old", ExternalIDs: ext("oidc", "old", "saml", "old")}, "")
			}
			a := call(t, srv, "PUT", "/_synapse/admin/v2/users/@alice:example.org", "tok", tc.body)
			want(t, a, tc.status, tc.errcode)
			if tc.message != "" && a.str("error") != tc.message {
				t.Errorf("error = %q, want %q", a.str("error"), tc.message)
			}
			u, ok := srv.User("alice")
			if ok != (tc.aliceIDs != nil) {
				t.Fatalf("alice exists: %v, want %v", ok, tc.aliceIDs != nil)
			}
			if !ok {
				return
			}
			if !reflect.DeepEqual(u.ExternalIDs, tc.aliceIDs) && !(len(u.ExternalIDs) == 0 && len(tc.aliceIDs) == 0) {
				t.Errorf("alice's external IDs = %v, want %v", u.ExternalIDs, tc.aliceIDs)
			}
			if u.DisplayName != tc.aliceName || u.HasPassword != tc.alicePass || u.AvatarURL != tc.aliceAvURL {
				t.Errorf("alice = %+v", u)
			}
			if b, _ := srv.User("bob"); !reflect.DeepEqual(b.ExternalIDs, ext("oidc", "taken")) {
				t.Errorf("bob's external IDs changed: %v", b.ExternalIDs)
			}
		})
	}
}

// The SSO login lands on the account holding the external ID, and is
// refused on a deactivated or locked one, which keeps its external IDs.
func TestSSOLogin(t *testing.T) {
	t.Parallel()
	srv := matrixtest.NewServer(t, matrixtest.Options{AdminToken: "tok"})
	srv.AddUser(matrixtest.FakeUser{Localpart: "alice", ExternalIDs: ext("oidc-okta", "00uA", "saml", "alice@idp")}, "")
	srv.AddUser(matrixtest.FakeUser{Localpart: "gone", ExternalIDs: ext("oidc-okta", "00uG")}, "")
	srv.AddUser(matrixtest.FakeUser{Localpart: "shut", Locked: true, ExternalIDs: ext("oidc-okta", "00uL")}, "")
	want(t, call(t, srv, "POST", "/_synapse/admin/v1/deactivate/@gone:example.org", "tok", map[string]any{"erase": false}), 200, "")
	for _, tc := range []struct {
		provider, subject, id string
		ok                    bool
	}{
		{"oidc-okta", "00uA", "@alice:example.org", true},
		{"saml", "alice@idp", "@alice:example.org", true},
		{"oidc-okta", "00uG", "@gone:example.org", false},
		{"oidc-okta", "00uL", "@shut:example.org", false},
		{"oidc-okta", "00uX", "", false},
	} {
		if id, ok := srv.SSOLogin(tc.provider, tc.subject); id != tc.id || ok != tc.ok {
			t.Errorf("SSOLogin(%q, %q) = %q, %v; want %q, %v", tc.provider, tc.subject, id, ok, tc.id, tc.ok)
		}
	}
	if u, _ := srv.User("alice"); u.Devices != 0 {
		t.Errorf("SSOLogin opened a session: %+v", u)
	}
}
