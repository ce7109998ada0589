package dendritetest_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/dendritetest"
)

func TestMain(m *testing.M) { dendritetest.Main(m, dendritetest.Options{}) }

var client = &http.Client{Timeout: 30 * time.Second}

// call sends a JSON request and decodes a JSON answer (nil if the body is not JSON).
func call(tb testing.TB, method, url string, body any) (int, map[string]any) {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

func nonce(tb testing.TB, s *dendritetest.Server) string {
	tb.Helper()
	status, m := call(tb, http.MethodGet, s.URL+"/_synapse/admin/v1/register", nil)
	n, _ := m["nonce"].(string)
	if status != http.StatusOK || n == "" {
		tb.Fatalf("GET nonce: %d %v", status, m)
	}
	return n
}

// mac is the shared-secret registration MAC: HMAC-SHA1 over
// nonce NUL username NUL password NUL "admin"|"notadmin" [NUL user_type].
func mac(secret []byte, parts ...string) string {
	h := hmac.New(sha1.New, secret)
	h.Write([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h.Sum(nil))
}

// registration is one shared-secret registration request; edit lets a test break it.
func register(tb testing.TB, s *dendritetest.Server, user, password string, edit func(body map[string]any)) (int, map[string]any) {
	tb.Helper()
	n := nonce(tb, s)
	body := map[string]any{
		"nonce":         n,
		"username":      user,
		"password":      password,
		"admin":         false,
		"inhibit_login": true,
		"mac":           mac(s.SharedSecret, n, user, password, "notadmin"),
	}
	if edit != nil {
		edit(body)
	}
	return call(tb, http.MethodPost, s.URL+"/_synapse/admin/v1/register", body)
}

func login(tb testing.TB, s *dendritetest.Server, user, password string) (int, map[string]any) {
	tb.Helper()
	return call(tb, http.MethodPost, s.URL+"/_matrix/client/v3/login", map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": user},
		"password":   password,
	})
}

func errcode(m map[string]any) string { s, _ := m["errcode"].(string); return s }

func TestRegisterLoginStop(t *testing.T) {
	s := dendritetest.StartForTest(t)
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Errorf("URL = %q, want a loopback address", s.URL)
	}

	const pw = "correct horse battery staple"
	status, m := register(t, s, "alice", pw, nil)
	if status != http.StatusOK || m["user_id"] != "@alice:localhost" {
		t.Fatalf("register alice: %d %v, want 200 and @alice:localhost", status, m)
	}
	status, m = login(t, s, "alice", pw)
	if status != http.StatusOK || m["user_id"] != "@alice:localhost" || m["access_token"] == "" {
		t.Fatalf("login alice: %d %v, want 200 with a token", status, m)
	}
	status, m = login(t, s, "alice", pw+"!")
	if status != http.StatusForbidden || errcode(m) != "M_FORBIDDEN" {
		t.Errorf("login with a wrong password: %d %v, want 403 M_FORBIDDEN", status, m)
	}

	pid, dir := s.PID(), s.Dir
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill -0 %d after Stop: %v, want ESRCH (process gone)", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after Stop: %v, want it removed", dir, err)
	}
	if resp, err := client.Get(s.URL + "/_matrix/client/versions"); err == nil {
		resp.Body.Close()
		t.Errorf("GET %s after Stop answered %s", s.URL, resp.Status)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestDendriteDialect pins what Dendrite v0.13.8 answers where it differs from
// Synapse (docs/PROTOCOL.md in shared/): the matrix and batch packages rely on it.
func TestDendriteDialect(t *testing.T) {
	s := dendritetest.Shared(t)
	const pw = "correct horse battery staple"

	t.Run("synapse admin API absent", func(t *testing.T) {
		status, m := call(t, http.MethodGet, s.URL+"/_synapse/admin/v2/users/@nobody:localhost", nil)
		if status != http.StatusNotFound || errcode(m) != "M_UNRECOGNIZED" {
			t.Errorf("GET admin v2 user: %d %v, want 404 M_UNRECOGNIZED", status, m)
		}
	})
	t.Run("no password policy", func(t *testing.T) {
		status, m := call(t, http.MethodGet, s.URL+"/_matrix/client/v3/password_policy", nil)
		if status != http.StatusNotFound || errcode(m) != "M_UNRECOGNIZED" {
			t.Errorf("GET password_policy: %d %v, want 404 M_UNRECOGNIZED", status, m)
		}
	})
	t.Run("availability", func(t *testing.T) {
		url := s.URL + "/_matrix/client/v3/register/available?username="
		status, m := call(t, http.MethodGet, url+"avail", nil)
		if status != http.StatusOK || m["available"] != true {
			t.Fatalf("available before: %d %v, want 200 available", status, m)
		}
		if status, m := register(t, s, "avail", pw, nil); status != http.StatusOK {
			t.Fatalf("register: %d %v", status, m)
		}
		for _, name := range []string{"avail", "AVAIL"} {
			status, m = call(t, http.MethodGet, url+name, nil)
			if status != http.StatusBadRequest || errcode(m) != "M_USER_IN_USE" {
				t.Errorf("available %s after: %d %v, want 400 M_USER_IN_USE", name, status, m)
			}
		}
	})
	t.Run("uppercase is lowercased", func(t *testing.T) {
		status, m := register(t, s, "Upper", pw, nil)
		if status != http.StatusOK || m["user_id"] != "@upper:localhost" {
			t.Fatalf("register Upper: %d %v, want 200 @upper:localhost", status, m)
		}
		status, m = register(t, s, "upper", pw, nil)
		if status != http.StatusBadRequest || errcode(m) != "M_USER_IN_USE" {
			t.Errorf("register upper again: %d %v, want 400 M_USER_IN_USE", status, m)
		}
	})
	t.Run("inhibit_login ignored", func(t *testing.T) {
		status, m := register(t, s, "session", pw, nil)
		if status != http.StatusOK {
			t.Fatalf("register: %d %v", status, m)
		}
		if tok, _ := m["access_token"].(string); tok == "" || m["device_id"] != "shared_secret_registration" {
			t.Errorf("register with inhibit_login: %v, want a token and device shared_secret_registration", keys(m))
		}
		if _, ok := m["home_server"]; ok {
			t.Errorf("register answered home_server; Dendrite v0.13.8 omits it")
		}
	})
	t.Run("nonce not consumed", func(t *testing.T) {
		n := nonce(t, s)
		for _, user := range []string{"reuse1", "reuse2"} {
			status, m := register(t, s, user, pw, func(b map[string]any) {
				b["nonce"] = n
				b["mac"] = mac(s.SharedSecret, n, user, pw, "notadmin")
			})
			if status != http.StatusOK {
				t.Errorf("register %s with a used nonce: %d %v, want 200", user, status, m)
			}
		}
	})

	refusals := []struct {
		name    string
		user    string
		pw      string
		edit    func(b map[string]any)
		status  int
		errcode string
	}{
		{"short password", "shortpw", "short", nil, http.StatusBadRequest, "M_WEAK_PASSWORD"},
		{"bad mac", "badmac", pw, func(b map[string]any) { b["mac"] = strings.Repeat("0", 40) }, http.StatusForbidden, "M_FORBIDDEN"},
		{"user_type in mac", "typed", pw, func(b map[string]any) {
			b["user_type"] = "bot"
			b["mac"] = mac(s.SharedSecret, b["nonce"].(string), "typed", pw, "notadmin", "bot")
		}, http.StatusForbidden, "M_FORBIDDEN"},
		{"invalid localpart", "bad name", pw, nil, http.StatusBadRequest, "M_INVALID_USERNAME"},
		{"unknown nonce", "nononce", pw, func(b map[string]any) {
			b["nonce"] = "not-a-nonce"
			b["mac"] = mac(s.SharedSecret, "not-a-nonce", "nononce", pw, "notadmin")
		}, http.StatusInternalServerError, ""},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			status, m := register(t, s, tt.user, tt.pw, tt.edit)
			if status != tt.status || errcode(m) != tt.errcode {
				t.Errorf("register: %d %v, want %d %q", status, m, tt.status, tt.errcode)
			}
		})
	}

	t.Run("public registration off", func(t *testing.T) {
		for _, kind := range []string{"user", "guest"} {
			status, m := call(t, http.MethodPost, s.URL+"/_matrix/client/v3/register?kind="+kind, map[string]any{
				"auth": map[string]any{"type": "m.login.dummy"}, "username": "public" + kind, "password": pw,
			})
			if status != http.StatusForbidden || errcode(m) != "M_FORBIDDEN" {
				t.Errorf("register kind=%s: %d %v, want 403 M_FORBIDDEN", kind, status, m)
			}
		}
	})
	t.Run("federation off", func(t *testing.T) {
		status, _ := call(t, http.MethodGet, s.URL+"/_matrix/key/v2/server", nil)
		if status != http.StatusNotFound {
			t.Errorf("GET /_matrix/key/v2/server: %d, want 404", status)
		}
	})
	t.Run("secret kept secret", func(t *testing.T) {
		if len(s.SharedSecret) < 64 {
			t.Errorf("shared secret is %d hex characters, want 64 (32 bytes)", len(s.SharedSecret))
		}
		for _, name := range []string{"shared_secret", "dendrite.yaml", "matrix_key.pem"} {
			fi, err := os.Stat(filepath.Join(s.Dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
			}
		}
		log, err := os.ReadFile(filepath.Join(s.Dir, "dendrite.log"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(log, s.SharedSecret) {
			t.Error("dendrite.log contains the shared secret")
		}
	})
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

var benchUser atomic.Int64

// BenchmarkRegister measures one shared-secret registration (nonce + POST) at
// Dendrite's test cost and at its default cost.
func BenchmarkRegister(b *testing.B) {
	for _, cost := range []int{4, 10} {
		b.Run(fmt.Sprintf("bcrypt=%d", cost), func(b *testing.B) {
			s, err := dendritetest.Start(b.Context(), dendritetest.Options{BcryptCost: cost})
			if err != nil {
				if errors.Is(err, dendritetest.ErrNotInstalled) {
					b.Skip(err)
				}
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Stop() })
			for b.Loop() {
				user := fmt.Sprintf("bench%d", benchUser.Add(1))
				if status, m := register(b, s, user, "correct horse battery staple", nil); status != http.StatusOK {
					b.Fatalf("register %s: %d %v", user, status, m)
				}
			}
		})
	}
}
