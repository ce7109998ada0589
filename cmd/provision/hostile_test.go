package main

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/provision-matrix/provision/internal/matrixtest"
)

// A server that quotes the admin token back in its error must not get it printed: not
// in a log line, not on the last line of stderr where the run's error is said (issue
// 11, point 10).
func TestEchoedTokenNeverPrinted(t *testing.T) {
	const token = "syt_YWRtaW4_echoedBackByAHostileServer_1a2b3c"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/_matrix/client/versions" {
			json.NewEncoder(w).Encode(map[string]any{"versions": []string{"v1.11"}})
			return
		}
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(map[string]string{"errcode": "M_UNKNOWN", "error": "unexpected Authorization: Bearer " + token})
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	id, _ := newIdentity(t, dir)
	write(t, filepath.Join(dir, "token"), token+"\n")
	write(t, filepath.Join(dir, "team.csv"), "localpart\nann\n")
	for _, format := range []string{"text", "json"} {
		code, stdout, stderr := runCLI(t, nil, "--homeserver", srv.URL, "--admin-token-file", filepath.Join(dir, "token"),
			"--recipient", id.Recipient().String(), "--retry-budget", "1s", "--log-level", "debug", "--log-format", format,
			filepath.Join(dir, "team.csv"))
		if code == ExitOK {
			t.Errorf("%s: exit 0 against a server that refuses everything", format)
		}
		if strings.Contains(stderr+stdout, token) || strings.Contains(stderr+stdout, "echoedBackByAHostileServer") {
			t.Errorf("%s: the admin token was printed:\n%s", format, stderr)
		}
	}
}

// Behind a proxy that answers 8% of requests 503, 8% 429, resets 5% and drops 8% of
// the answers (after the server acted), the preflight included, a 200-user run finishes
// in one go: nobody failed, nobody created twice, every password logs in (issue 11,
// point 9). The faults are drawn from a seeded source, so the run is the same each time.
func TestFlakyProxyRunFinishesInOneGo(t *testing.T) {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(11, 9))
	srv := matrixtest.NewServer(t, matrixtest.Options{SharedSecret: "flaky-proxy-shared-secret", Faults: func(r *http.Request) matrixtest.Fault {
		mu.Lock()
		p := rng.Float64()
		mu.Unlock()
		switch {
		case p < 0.08:
			return matrixtest.Fault{Status: http.StatusServiceUnavailable}
		case p < 0.16:
			return matrixtest.Fault{Status: http.StatusTooManyRequests, Errcode: "M_LIMIT_EXCEEDED", RetryAfterMs: 50}
		case p < 0.21:
			return matrixtest.Fault{ResetBefore: true}
		case p < 0.29:
			return matrixtest.Fault{DropResponse: true}
		}
		return matrixtest.Fault{}
	}})
	dir := t.TempDir()
	id, keyFile := newIdentity(t, dir)
	text, users := rosterOf(200)
	write(t, filepath.Join(dir, "team.csv"), text)
	write(t, filepath.Join(dir, "secret"), "flaky-proxy-shared-secret\n")
	code, _, stderr := runCLI(t, nil, "--homeserver", srv.URL(), "--shared-secret-file", filepath.Join(dir, "secret"),
		"--recipient", id.Recipient().String(), "--credentials", filepath.Join(dir, "c.age"), "--report", filepath.Join(dir, "r.csv"),
		"--rate", "0", "--concurrency", "8", "--quiet", filepath.Join(dir, "team.csv"))
	if code != ExitOK {
		t.Fatalf("exit %d, want 0:\n%s", code, stderr)
	}
	for lp, row := range readReport(t, filepath.Join(dir, "r.csv")) {
		if row[2] != "created" {
			t.Errorf("%s: %v, want created", lp, row)
		}
	}
	got := map[string]string{}
	for _, r := range decryptCredentials(t, filepath.Join(dir, "c.age"), keyFile, id) {
		got[r[0]] = r[1]
	}
	if c := srv.Counts(); c.Registrations != len(users) {
		t.Errorf("the server performed %d registrations, want %d", c.Registrations, len(users))
	}
	for _, u := range users {
		if !srv.CheckPassword(u, got[srv.UserID(u)]) {
			t.Errorf("%s: no working password handed off", u)
		}
	}
}
