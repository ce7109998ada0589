package mastest_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/mastest"
)

// These tests speak raw HTTP to the fake, to pin the answers MAS gives that
// the client in package mas never provokes.

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

type answer struct {
	status int
	body   map[string]any
	text   string
}

func send(t *testing.T, s *mastest.Server, method, path, auth, contentType, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, text: string(data)}
	_ = json.Unmarshal(data, &a.body)
	return a
}

const form = "application/x-www-form-urlencoded"

func token(t *testing.T, s *mastest.Server, scope string) string {
	t.Helper()
	a := send(t, s, "POST", "/oauth2/token", basic(s.ClientID(), s.ClientSecret()), form,
		url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}.Encode())
	if a.status != 200 {
		t.Fatalf("token: HTTP %d %s", a.status, a.text)
	}
	return a.body["access_token"].(string)
}

func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	s := mastest.New(t, mastest.Options{ClientSecret: "s3cret", TokenLifetime: 120 * time.Second})
	grant := url.Values{"grant_type": {"client_credentials"}, "scope": {"urn:mas:admin"}}.Encode()
	tests := []struct {
		name        string
		auth, ctype string
		body        string
		status      int
		code        string
	}{
		{"ok", basic(s.ClientID(), "s3cret"), form, grant, 200, ""},
		{"wrong secret", basic(s.ClientID(), "nope"), form, grant, 401, "invalid_client"},
		{"unknown client", basic("01J44QC8BCY7FCFM7WGHQGKMTJ", "s3cret"), form, grant, 401, "invalid_client"},
		{"urlencoded secret is not decoded", basic(s.ClientID(), "s3cret%21"), form, grant, 401, "invalid_client"},
		{"client_secret_post for a basic client", "", form, grant + "&client_id=" + s.ClientID() + "&client_secret=s3cret", 401, "invalid_client"},
		{"no credentials", "", form, grant, 400, "invalid_request"},
		{"garbled header", "Basic !!!", form, grant, 400, "invalid_request"},
		{"not a form", basic(s.ClientID(), "s3cret"), "application/json", `{}`, 400, "invalid_request"},
		{"another grant", basic(s.ClientID(), "s3cret"), form, "grant_type=password", 400, "unsupported_grant_type"},
		{"synapse scope", basic(s.ClientID(), "s3cret"), form, "grant_type=client_credentials&scope=urn%3Amas%3Aadmin+urn%3Asynapse%3Aadmin%3A%2A", 403, "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := send(t, s, "POST", "/oauth2/token", tt.auth, tt.ctype, tt.body)
			if a.status != tt.status || (tt.code != "" && a.body["error"] != tt.code) {
				t.Errorf("HTTP %d %s; want %d %s", a.status, a.text, tt.status, tt.code)
			}
			if tt.status == 200 {
				tok, _ := a.body["access_token"].(string)
				if !strings.HasPrefix(tok, "mat_") || len(tok) != 4+30+1+6 ||
					a.body["token_type"] != "Bearer" || a.body["expires_in"] != 120.0 || a.body["scope"] != "urn:mas:admin" {
					t.Errorf("token answer %s", a.text)
				}
			}
		})
	}
}

func TestNotAdminClientGetsNoAdminScope(t *testing.T) {
	t.Parallel()
	s := mastest.New(t, mastest.Options{NotAdminClient: true})
	a := send(t, s, "POST", "/oauth2/token", basic(s.ClientID(), s.ClientSecret()), form, "grant_type=client_credentials&scope=urn%3Amas%3Aadmin")
	if a.status != 403 || a.body["error"] != "invalid_scope" || a.body["error_description"] != "scope 'urn:mas:admin' not allowed" {
		t.Errorf("HTTP %d %s", a.status, a.text)
	}
}

func titles(a answer) string {
	errs, _ := a.body["errors"].([]any)
	var out []string
	for _, e := range errs {
		out = append(out, e.(map[string]any)["title"].(string))
	}
	return strings.Join(out, " / ")
}

func TestAdminAuthorization(t *testing.T) {
	t.Parallel()
	clk := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var now atomic.Pointer[time.Time]
	now.Store(&clk)
	s := mastest.New(t, mastest.Options{Clock: func() time.Time { return *now.Load() }})
	good := token(t, s, "urn:mas:admin")
	noScope := token(t, s, "openid")
	tests := []struct {
		name   string
		auth   string
		status int
		title  string
	}{
		{"no header", "", 400, "Missing authorization header"},
		{"not bearer", basic("a", "b"), 400, "Invalid authorization header"},
		{"garbage token", "Bearer hello", 401, "Invalid type of access token / invalid token format"},
		{"bad checksum", "Bearer mat_" + strings.Repeat("a", 30) + "_000000", 401, `Invalid type of access token / invalid crc "000000", expected`},
		{"unknown prefix", "Bearer xyz_" + strings.Repeat("a", 30) + "_000000", 401, `Invalid type of access token / unknown token prefix "xyz"`},
		{"no admin scope", "Bearer " + noScope, 401, "Missing urn:mas:admin scope"},
		{"good", "Bearer " + good, 200, ""},
	}
	for _, tt := range tests {
		a := send(t, s, "GET", "/api/admin/v1/site-config", tt.auth, "", "")
		if a.status != tt.status || !strings.HasPrefix(titles(a), tt.title) || (tt.title == "" && titles(a) != "") {
			t.Errorf("%s: HTTP %d %q; want %d %q", tt.name, a.status, titles(a), tt.status, tt.title)
		}
	}
	later := clk.Add(301 * time.Second)
	now.Store(&later)
	if a := send(t, s, "GET", "/api/admin/v1/site-config", "Bearer "+good, "", ""); a.status != 401 || titles(a) != "Access token expired" {
		t.Errorf("expired: HTTP %d %q", a.status, titles(a))
	}
	s.ExpireTokens()
	if a := send(t, s, "GET", "/api/admin/v1/site-config", "Bearer "+good, "", ""); a.status != 401 || titles(a) != "Unknown access token" {
		t.Errorf("revoked: HTTP %d %q", a.status, titles(a))
	}
}

func TestAdminRequestShapes(t *testing.T) {
	t.Parallel()
	s := mastest.New(t, mastest.Options{})
	auth := "Bearer " + token(t, s, "urn:mas:admin")
	alice := s.AddUser(mastest.FakeUser{Username: "alice"})
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		want                            string // a title, or the start of a plain-text body
	}{
		{"no content type", "POST", "/api/admin/v1/users", "", `{"username":"bob"}`, 415, "Expected request with `Content-Type: application/json`"},
		{"bad JSON", "POST", "/api/admin/v1/users", "application/json", `{"username":`, 400, "Failed to parse the request body as JSON"},
		{"missing field", "POST", "/api/admin/v1/users", "application/json", `{}`, 422, "Failed to deserialize the JSON body into the target type: missing field `username`"},
		{"path not a ULID", "POST", "/api/admin/v1/users/alice/set-admin", "application/json", `{"admin":true}`, 400, "Invalid ULID in path"},
		{"first and last", "GET", "/api/admin/v1/users?page[first]=1&page[last]=1", "", "", 400, "Cannot specify both `page[first]` and `page[last]` parameters"},
		{"bad cursor", "GET", "/api/admin/v1/users?page[after]=nope", "", "", 400, "Invalid pagination parameters"},
		{"unknown path", "GET", "/api/admin/v1/nothing", "", "", 404, ""},
		{"email twice on the same user", "POST", "/api/admin/v1/user-emails", "application/json", `{"user_id":"` + alice + `","email":"a@example.org"}`, 201, ""},
		{"email twice on the same user (2)", "POST", "/api/admin/v1/user-emails", "application/json", `{"user_id":"` + alice + `","email":"A@example.org"}`, 409, `User email "A@example.org" already in use`},
	}
	for _, tt := range tests {
		a := send(t, s, tt.method, tt.path, auth, tt.ctype, tt.body)
		got := titles(a)
		if got == "" {
			got = a.text
		}
		if a.status != tt.status || !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s: HTTP %d %q; want %d %q", tt.name, a.status, got, tt.status, tt.want)
		}
	}
	if n := s.RequestCount("unrecognized"); n != 1 {
		t.Errorf("unrecognized requests = %d, want 1", n)
	}
}

func TestListShape(t *testing.T) {
	t.Parallel()
	s := mastest.New(t, mastest.Options{})
	auth := "Bearer " + token(t, s, "urn:mas:admin")
	for _, n := range []string{"a", "b", "c"} {
		s.AddUser(mastest.FakeUser{Username: n})
	}
	a := send(t, s, "GET", "/api/admin/v1/users?page[first]=2", auth, "", "")
	data, _ := a.body["data"].([]any)
	links, _ := a.body["links"].(map[string]any)
	meta, _ := a.body["meta"].(map[string]any)
	if a.status != 200 || len(data) != 2 || meta["count"] != 3.0 || links["next"] == nil {
		t.Fatalf("first page: %s", a.text)
	}
	last := data[1].(map[string]any)
	cursor := last["meta"].(map[string]any)["page"].(map[string]any)["cursor"]
	if cursor != last["id"] || !strings.Contains(links["next"].(string), "page[after]="+last["id"].(string)) {
		t.Errorf("cursor %v, next %v", cursor, links["next"])
	}
	a = send(t, s, "GET", "/api/admin/v1/users?page[first]=2&count=false&page[after]="+last["id"].(string), auth, "", "")
	data, _ = a.body["data"].([]any)
	links, _ = a.body["links"].(map[string]any)
	if len(data) != 1 || links["next"] != nil || a.body["meta"] != nil {
		t.Errorf("second page: %s", a.text)
	}
}

func TestFaultsAndCounts(t *testing.T) {
	t.Parallel()
	s := mastest.New(t, mastest.Options{})
	s.FailNext(2, "GET /api/admin/v1/site-config", mastest.Fault{Status: 429, RetryAfter: 1500 * time.Millisecond})
	for i, want := range []int{429, 429, 400} { // then the real answer: no token
		req, _ := http.NewRequestWithContext(t.Context(), "GET", s.URL()+"/api/admin/v1/site-config", nil)
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || (want == 429 && resp.Header.Get("Retry-After") != "2") {
			t.Errorf("request %d: HTTP %d Retry-After %q", i, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	if n := s.RequestCount("GET /api/admin/v1/site-config"); n != 3 {
		t.Errorf("site-config requests = %d, want 3", n)
	}
}
