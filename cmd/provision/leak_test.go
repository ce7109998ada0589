//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/handoff"
	"github.com/provision-matrix/provision/internal/matrixtest"
)

// hostileProxy sits between provision and the fake homeserver. It records every
// password sent to create an account, and answers some of those requests itself with
// errors that quote everything it was sent: the request body (password included), the
// Authorization header and, as a server that leaks its own configuration would, the
// shared secret. It can hold the first registration until the test lets it go.
type hostileProxy struct {
	srv    *httptest.Server
	secret string

	mu        sync.Mutex
	passwords map[string]bool
	n         int           // password-carrying requests seen
	hold      chan struct{} // closed to let the first registration through
	holding   chan struct{} // closed once the first registration is being held
	holdOnce  sync.Once
}

func newHostileProxy(t *testing.T, backend, secret string) *hostileProxy {
	t.Helper()
	target, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileProxy{secret: secret, passwords: map[string]bool{}, hold: make(chan struct{}), holding: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0) // the resets are on purpose
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		creates := (r.Method == http.MethodPost && r.URL.Path == "/_synapse/admin/v1/register") ||
			(r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/_synapse/admin/v2/users/"))
		if !creates {
			rp.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var fields struct {
			Username string `json:"username"`
			Password string `json:"password"`
		}
		_ = json.Unmarshal(body, &fields)
		if fields.Password == "" {
			// VerifySharedSecret's probe (empty user name, empty password).
			rp.ServeHTTP(w, r)
			return
		}
		h.mu.Lock()
		h.passwords[fields.Password] = true
		h.n++
		n := h.n
		h.mu.Unlock()
		if n == 1 {
			h.holdOnce.Do(func() { close(h.holding) })
			<-h.hold
		}
		quote := fmt.Sprintf("registration_shared_secret=%s authorization=%q request %s %s body=%s",
			h.secret, r.Header.Get("Authorization"), r.Method, r.URL.Path, body)
		switch n {
		case 2:
			writeJSONError(w, 500, map[string]any{"errcode": "M_UNKNOWN", "error": "internal error: " + quote})
		case 4:
			writeJSONError(w, 429, map[string]any{"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 20, "error": "slow down: " + quote})
		case 6:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "<html><body><h1>502 Bad Gateway</h1><pre>%s</pre></body></html>", quote)
		case 8:
			// A refusal: this user fails in the first run, and its error is in the
			// report and the summary.
			writeJSONError(w, 400, map[string]any{"errcode": "M_INVALID_USERNAME", "error": "refused: " + quote})
		case 10:
			// The password, then the secret, start near the end of what an error
			// message keeps of a server's text, so a cut would leave a piece of them.
			writeJSONError(w, 500, map[string]any{"errcode": "M_UNKNOWN", "error": strings.Repeat("x", 290) + fields.Password + " " + quote})
		case 11:
			writeJSONError(w, 503, map[string]any{"errcode": "M_UNKNOWN", "error": strings.Repeat("y", 292) + h.secret + " " + quote})
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(h.srv.Close)
	t.Cleanup(h.release) // before Close, which waits for a held request
	return h
}

func (h *hostileProxy) release() {
	select {
	case <-h.hold:
	default:
		close(h.hold)
	}
}

func (h *hostileProxy) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for pw := range h.passwords {
		out = append(out, pw)
	}
	return out
}

func writeJSONError(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// leakSearch finds secrets, and pieces of them, in what a run wrote.
type leakSearch struct {
	needles []needle
}

type needle struct {
	kind  string // "the shared secret", "a password", ...
	where string // which bytes of it
	b     []byte
}

// add looks for every window of the given width of the value: a value cut short
// by a message limit must not leak in part either.
func (l *leakSearch) add(kind, value string, width int) {
	if len(value) <= width {
		l.needles = append(l.needles, needle{kind, "", []byte(value)})
		return
	}
	for i := 0; i+width <= len(value); i++ {
		l.needles = append(l.needles, needle{kind, fmt.Sprintf(" (bytes %d-%d)", i, i+width), []byte(value[i : i+width])})
	}
}

// check reports the first piece of each kind of secret found in data.
func (l *leakSearch) check(t *testing.T, where string, data []byte) {
	t.Helper()
	found := map[string]bool{}
	for _, nd := range l.needles {
		if found[nd.kind] {
			continue
		}
		if j := bytes.Index(data, nd.b); j >= 0 {
			found[nd.kind] = true
			lo, hi := max(0, j-60), min(len(data), j+len(nd.b)+20)
			t.Errorf("%s holds %s%s: …%q…", where, nd.kind, nd.where, data[lo:hi])
		}
	}
}

// TestNothingLeaks runs provision at the debug log level against a server that
// fails in every way and quotes the requests it was sent, with per-user handoff, in
// both modes: with the shared secret alone, and with the shared secret and an admin
// token (which then does the work). It searches every byte the runs wrote, and the
// process's command line, for the secret, the token and every password.
func TestNothingLeaks(t *testing.T) {
	bin := buildProvision(t)
	t.Run("shared secret", func(t *testing.T) { testNothingLeaks(t, bin, false) })
	t.Run("admin token", func(t *testing.T) { testNothingLeaks(t, bin, true) })
}

func testNothingLeaks(t *testing.T, bin string, withToken bool) {
	dir := t.TempDir()
	sharedSecret := "ss-" + randomHex(t, 24)
	adminToken := "syt_" + randomHex(t, 20)

	register := matrixtest.Route(http.MethodPost, "/_synapse/admin/v1/register")
	var posts atomic.Int32
	backend := matrixtest.NewServer(t, matrixtest.Options{SharedSecret: sharedSecret, AdminToken: adminToken,
		Faults: func(r *http.Request) matrixtest.Fault {
			if !register(r) && (r.Method != http.MethodPut || !strings.HasPrefix(r.URL.Path, "/_synapse/admin/v2/users/")) {
				return matrixtest.Fault{}
			}
			// Behind the proxy's own errors, the server drops one answer after
			// creating the user (resolved by logging in) and resets one connection.
			switch posts.Add(1) {
			case 13:
				return matrixtest.Fault{DropResponse: true}
			case 15:
				return matrixtest.Fault{ResetBefore: true}
			case 17:
				return matrixtest.Fault{Status: 500, Errcode: "M_UNKNOWN"}
			case 19:
				return matrixtest.Fault{Status: 429, Errcode: "M_LIMIT_EXCEEDED", RetryAfterMs: 10}
			}
			return matrixtest.Fault{}
		}})
	proxy := newHostileProxy(t, backend.URL(), sharedSecret)

	opID, opKeyFile := newIdentity(t, dir)
	write(t, filepath.Join(dir, "shared-secret"), sharedSecret+"\n")
	write(t, filepath.Join(dir, "admin-token"), adminToken+"\n")
	supplied := "Supplied-" + randomHex(t, 10)

	// 16 users; the odd ones have their own key, one has a password in the roster.
	userIDs := map[string]*age.X25519Identity{}
	var roster strings.Builder
	roster.WriteString("localpart,displayname,password,recipient\n")
	for i := range 16 {
		lp := fmt.Sprintf("leak%02d", i)
		pw, rcpt := "", ""
		if i == 5 {
			pw = supplied
		}
		if i%2 == 1 {
			id, err := age.GenerateX25519Identity()
			if err != nil {
				t.Fatal(err)
			}
			userIDs[lp] = id
			rcpt = id.Recipient().String()
		}
		fmt.Fprintf(&roster, "%s,Leak %d,%s,%s\n", lp, i, pw, rcpt)
	}
	write(t, filepath.Join(dir, "team.csv"), roster.String())
	inputs := map[string]bool{"team.csv": true, "shared-secret": true, "admin-token": true, "operator-key.txt": true}

	common := []string{"--homeserver", proxy.srv.URL, "--shared-secret-file", "shared-secret"}
	if withToken {
		common = append(common, "--admin-token-file", "admin-token")
	}
	common = append(common, "--recipient", opID.Recipient().String(), "--concurrency", "3", "--rate", "0", "--request-timeout", "5s",
		"--log-level", "debug", "--journal", "out/provision.journal", "--handoff-dir", "out/handoff")
	if err := os.Mkdir(filepath.Join(dir, "out"), 0o700); err != nil {
		t.Fatal(err)
	}

	// Run 1: report on stdout, text logs. Its first registration is held while the
	// test reads the process's command line.
	p1 := startProvision(t, bin, dir, nil, slices.Concat(common, []string{"--credentials", "out/credentials-1.age", "--report", "-", "team.csv"})...)
	select {
	case <-proxy.holding:
	case <-p1.done:
		t.Fatalf("run 1 exited %d before its first registration:\n%s", p1.state.ExitCode(), p1.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("run 1 sent no registration within 30 s")
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(p1.cmd.Process.Pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	proxy.release()
	code1 := p1.wait(t, 60*time.Second)
	if code1 != ExitFailed {
		t.Errorf("run 1 exited %d, want %d (one user refused):\n%s", code1, ExitFailed, p1.stderr.String())
	}
	if !strings.Contains(p1.stdout.String(), "failed") {
		t.Errorf("run 1's report on stdout shows no failed user:\n%s", p1.stdout.String())
	}

	// Run 2 resumes: the refused user is retried with its journaled password. JSON
	// logs, JSON report.
	p2 := startProvision(t, bin, dir, nil, slices.Concat(common, []string{"--credentials", "out/credentials-2.age", "--report", "out/report.json", "--log-format", "json", "team.csv"})...)
	if code := p2.wait(t, 60*time.Second); code != 0 {
		t.Errorf("run 2 exited %d, want 0:\n%s", code, p2.stderr.String())
	}

	// The passwords: from the operator's files and the users' own welcome files, as
	// the people receiving them would read them.
	handed := map[string]string{} // user ID → password
	for _, name := range []string{"credentials-1.age", "credentials-2.age"} {
		path := filepath.Join(dir, "out", name)
		if _, err := os.Stat(path); err != nil {
			// Run 2 writes none when the one user it creates has a key of their own;
			// the count below finds anyone missing.
			continue
		}
		for _, r := range decryptCredentials(t, path, opKeyFile, opID) {
			if _, own := userIDs[strings.TrimSuffix(strings.TrimPrefix(r[0], "@"), ":"+backend.ServerName())]; own {
				t.Errorf("%s has a key of its own but its password is in the operator's %s", r[0], name)
			}
			handed[r[0]] = r[1]
		}
	}
	var other age.Identity = opID
	for lp, id := range userIDs {
		name, err := handoff.WelcomeFileName(lp)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "out", "handoff", name)
		userID, pw := readWelcome(t, path, id)
		handed[userID] = pw
		// Nobody else opens it: not the operator, not another user.
		for _, wrong := range []age.Identity{opID, other} {
			if wrong == id {
				continue
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := age.Decrypt(f, wrong); err == nil {
				t.Errorf("%s's welcome file opens with a key that is not theirs", lp)
			}
			f.Close()
		}
		other = id
	}
	if len(handed) != 16 {
		t.Errorf("%d users handed off, want all 16", len(handed))
	}
	sent := map[string]bool{}
	for _, pw := range proxy.seen() {
		sent[pw] = true
	}
	for userID, pw := range handed {
		lp := strings.TrimSuffix(strings.TrimPrefix(userID, "@"), ":"+backend.ServerName())
		if !backend.CheckPassword(lp, pw) {
			t.Errorf("%s: the handed-off password does not log in", userID)
		}
		if !sent[pw] {
			t.Errorf("%s: the handed-off password is not one that was sent to the server", userID)
		}
	}
	if handed["@leak05:"+backend.ServerName()] != supplied {
		t.Error("the roster's supplied password was not the one handed off")
	}

	var search leakSearch
	search.add("the shared secret", sharedSecret, 12)
	search.add("the admin token", adminToken, 12)
	for pw := range sent {
		search.add("a password", pw, 10)
	}

	search.check(t, "the command line in /proc", cmdline)
	search.check(t, "run 1's stdout", []byte(p1.stdout.String()))
	search.check(t, "run 1's stderr", []byte(p1.stderr.String()))
	search.check(t, "run 2's stdout", []byte(p2.stdout.String()))
	search.check(t, "run 2's stderr", []byte(p2.stderr.String()))
	files := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if inputs[rel] {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && (strings.HasSuffix(path, ".age") || strings.Contains(rel, "journal")) && info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600: it holds passwords, encrypted or not", rel, info.Mode().Perm())
		}
		if strings.HasSuffix(path, ".age") {
			// Skipped only if it really is encrypted.
			if !bytes.HasPrefix(data, []byte("age-encryption.org/v1\n")) {
				t.Errorf("%s is named .age but is not an age file", rel)
			}
			return nil
		}
		files++
		search.check(t, rel, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 2 {
		t.Errorf("searched %d output files; the journal and the report at least should be there", files)
	}
	if t.Failed() {
		t.Logf("run 1 stderr:\n%s\nrun 2 stderr:\n%s", p1.stderr.String(), p2.stderr.String())
	}
}
