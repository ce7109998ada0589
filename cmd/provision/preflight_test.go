package main

import (
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/provision-matrix/provision/internal/matrixtest"
)

const preflightSecret = "preflight-shared-secret"

// preflightFixture is a valid run, ready to be spoiled one way at a time.
type preflightFixture struct {
	dir  string
	srv  *matrixtest.Server
	id   *age.X25519Identity
	opts map[string]string // flag → value; "" values are left out
}

// newPreflightFixture starts a fake with o; its shared secret is the fixture's unless
// o names another, or "none" for a server without one.
func newPreflightFixture(t *testing.T, o matrixtest.Options) *preflightFixture {
	t.Helper()
	switch o.SharedSecret {
	case "":
		o.SharedSecret = preflightSecret
	case "none":
		o.SharedSecret = ""
	}
	f := &preflightFixture{dir: t.TempDir(), srv: matrixtest.NewServer(t, o)}
	f.id, _ = newIdentity(t, f.dir)
	write(t, f.path("team.csv"), "localpart,displayname\npre1,One\npre2,Two\n")
	write(t, f.path("secret"), preflightSecret+"\n")
	f.opts = map[string]string{
		"--homeserver":         f.srv.URL(),
		"--shared-secret-file": f.path("secret"),
		"--recipient":          f.id.Recipient().String(),
		"--credentials":        f.path("credentials.age"),
		"--report":             f.path("report.csv"),
		"--handoff-dir":        f.path("handoff"),
	}
	return f
}

func (f *preflightFixture) path(name string) string { return filepath.Join(f.dir, name) }

const preflightToken = "syt_preflight_admin_token"

// useAdminToken switches the fixture to admin-token mode.
func (f *preflightFixture) useAdminToken(t *testing.T) {
	t.Helper()
	f.srv = matrixtest.NewServer(t, matrixtest.Options{SharedSecret: preflightSecret, AdminToken: preflightToken})
	write(t, f.path("token"), preflightToken+"\n")
	f.opts["--homeserver"] = f.srv.URL()
	f.opts["--shared-secret-file"] = ""
	f.opts["--admin-token-file"] = f.path("token")
}

func (f *preflightFixture) run(t *testing.T, extra ...string) (int, string) {
	t.Helper()
	var args []string
	for k, v := range f.opts {
		if v != "" {
			args = append(args, k, v)
		}
	}
	args = append(args, extra...)
	args = append(args, f.path("team.csv"))
	code, _, stderr := runCLI(t, nil, args...)
	return code, stderr
}

func requests(srv *matrixtest.Server) int {
	n := 0
	for _, v := range srv.Counts().Requests {
		n += v
	}
	return n
}

func posts(srv *matrixtest.Server) int {
	n := 0
	for route, v := range srv.Counts().Requests {
		if strings.HasPrefix(route, "POST ") || strings.HasPrefix(route, "PUT ") {
			n += v
		}
	}
	return n
}

// TestPreflightLocalProblemsSendNothing: whatever can be found out on this machine is
// found out before the first request, and stops the run with exit 2.
func TestPreflightLocalProblemsSendNothing(t *testing.T) {
	cases := []struct {
		name  string
		spoil func(t *testing.T, f *preflightFixture)
		want  string // in stderr
	}{
		{"report directory missing", func(t *testing.T, f *preflightFixture) {
			f.opts["--report"] = f.path("no-such-dir/report.csv")
		}, "no-such-dir"},
		{"credentials directory is a file", func(t *testing.T, f *preflightFixture) {
			write(t, f.path("plainfile"), "x")
			f.opts["--credentials"] = f.path("plainfile/credentials.age")
		}, "plainfile"},
		{"journal directory missing", func(t *testing.T, f *preflightFixture) {
			f.opts["--journal"] = f.path("gone/provision.journal")
		}, "gone"},
		{"handoff directory cannot be made", func(t *testing.T, f *preflightFixture) {
			write(t, f.path("team.csv"), "localpart,recipient\npre1,"+f.id.Recipient().String()+"\n")
			write(t, f.path("blocker"), "x")
			f.opts["--handoff-dir"] = f.path("blocker/handoff")
		}, "blocker"},
		{"report is the credentials file", func(t *testing.T, f *preflightFixture) {
			f.opts["--report"] = f.path("credentials.csv")
			f.opts["--credentials"] = f.path("credentials.csv")
		}, "are the same file"},
		{"report is a link to the credentials file", func(t *testing.T, f *preflightFixture) {
			write(t, f.path("credentials.age"), "an earlier run's passwords")
			if err := os.Symlink(f.path("credentials.age"), f.path("report.csv")); err != nil {
				t.Fatal(err)
			}
			f.opts["--report"] = f.path("report.csv")
		}, "are the same file"},
		{"recipient does not parse", func(t *testing.T, f *preflightFixture) {
			f.opts["--recipient"] = "age1notakey"
		}, "--recipient"},
		{"recipients file line does not parse", func(t *testing.T, f *preflightFixture) {
			write(t, f.path("recipients.txt"), "# team keys\n"+f.id.Recipient().String()+"\nssh-ed25519 AAAAnot-base64!\n")
			f.opts["--recipient"] = ""
			f.opts["--recipients-file"] = f.path("recipients.txt")
		}, "recipients.txt"},
		{"roster recipient does not parse", func(t *testing.T, f *preflightFixture) {
			write(t, f.path("team.csv"), "localpart,recipient\npre1,age1zzz\n")
		}, "team.csv:2:"},
		{"secret file missing", func(t *testing.T, f *preflightFixture) {
			if f.opts["--admin-token-file"] != "" {
				f.opts["--admin-token-file"] = f.path("no-secret")
			} else {
				f.opts["--shared-secret-file"] = f.path("no-secret")
			}
		}, "no-secret"},
		{"secret file empty", func(t *testing.T, f *preflightFixture) {
			write(t, f.path("secret"), "\n  \n")
			write(t, f.path("token"), "\n")
		}, "empty"},
		{"no recipient at all", func(t *testing.T, f *preflightFixture) {
			f.opts["--recipient"] = ""
		}, "age-keygen"},
	}
	for _, mode := range []string{"shared secret", "admin token"} {
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				f := newPreflightFixture(t, matrixtest.Options{})
				if mode == "admin token" {
					f.useAdminToken(t)
				}
				tc.spoil(t, f)
				before, _ := os.ReadFile(f.path("credentials.age"))
				code, stderr := f.run(t)
				if code != ExitUsage {
					t.Errorf("exit %d, want %d:\n%s", code, ExitUsage, stderr)
				}
				if !strings.Contains(stderr, tc.want) {
					t.Errorf("stderr does not mention %q:\n%s", tc.want, stderr)
				}
				if n := requests(f.srv); n != 0 {
					t.Errorf("%d requests reached the server (%v); a local problem must stop the run before the first", n, f.srv.Counts().Requests)
				}
				if after, _ := os.ReadFile(f.path("credentials.age")); string(after) != string(before) {
					t.Error("the credentials file changed")
				}
			})
		}
	}
}

// An earlier run's credentials file may hold the only copy of its passwords: a run
// never stops because of it (issue 11: "a rerun of the same command always finishes
// the job") and never replaces it, --force or not: the new file goes beside it, and
// the run says where.
func TestExistingCredentialsAreKept(t *testing.T) {
	for _, force := range []bool{false, true} {
		t.Run(fmt.Sprintf("force=%v", force), func(t *testing.T) {
			f := newPreflightFixture(t, matrixtest.Options{})
			write(t, f.path("credentials.age"), "an earlier run's passwords")
			var extra []string
			if force {
				extra = append(extra, "--force")
			}
			code, stderr := f.run(t, extra...)
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			if b, _ := os.ReadFile(f.path("credentials.age")); string(b) != "an earlier run's passwords" {
				t.Errorf("the earlier credentials file was replaced: %q", b)
			}
			if !strings.Contains(stderr, f.path("credentials-2.age")) {
				t.Errorf("stderr does not say where the new file is:\n%s", stderr)
			}
			if rows := decryptCredentials(t, f.path("credentials-2.age"), f.path("operator-key.txt"), f.id); len(rows) != 2 {
				t.Errorf("credentials hold %d users, want 2", len(rows))
			}
		})
	}
}

// TestPreflightServerProblems: what only the server can tell stops the run before
// anyone is created, with a message that says what to do.
func TestPreflightServerProblems(t *testing.T) {
	closed := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr
	}
	cases := []struct {
		name string
		o    matrixtest.Options
		url  func(t *testing.T) string // overrides the fake's URL
		code int
		want []string
	}{
		{"server down", matrixtest.Options{}, closed, ExitFailed,
			[]string{"no Matrix homeserver answers", "connection refused", "--homeserver"}},
		{"shared-secret endpoint missing (Matrix Authentication Service)", matrixtest.Options{MAS: true}, nil, ExitFailed,
			[]string{"Matrix Authentication Service"}},
		{"shared-secret endpoint missing (Dendrite without a secret)", matrixtest.Options{Dialect: matrixtest.Dendrite, SharedSecret: "none"}, nil, ExitFailed,
			[]string{"registration_shared_secret"}},
		{"wrong secret", matrixtest.Options{SharedSecret: "the-server-has-another-secret"}, nil, ExitUsage,
			[]string{"rejected the shared secret", "registration_shared_secret"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newPreflightFixture(t, tc.o)
			if tc.url != nil {
				f.opts["--homeserver"] = tc.url(t)
			}
			code, stderr := f.run(t)
			if code != tc.code {
				t.Errorf("exit %d, want %d:\n%s", code, tc.code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
			if n := len(f.srv.Users()); n != 0 {
				t.Errorf("%d accounts created", n)
			}
			if _, err := os.Stat(f.path("credentials.age")); err == nil {
				t.Error("a credentials file was written")
			}
			if strings.Contains(stderr, preflightSecret) {
				t.Error("the shared secret is on stderr")
			}
		})
	}
}

// TestRefusesPlainHTTPOffLoopback: passwords never cross a network in the clear unless
// the operator says so; the refusal names the reason and the way out, and nothing is
// sent (the .invalid host could not be reached anyway).
func TestRefusesPlainHTTPOffLoopback(t *testing.T) {
	f := newPreflightFixture(t, matrixtest.Options{})
	f.opts["--homeserver"] = "http://matrix.provision-test.invalid:8008"
	code, stderr := f.run(t)
	if code != ExitUsage {
		t.Errorf("exit %d, want %d:\n%s", code, ExitUsage, stderr)
	}
	for _, w := range []string{"refusing plain http://", "unencrypted", "https://", "--allow-insecure-http"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr does not mention %q:\n%s", w, stderr)
		}
	}
	// With --allow-insecure-http the URL is accepted, and the run fails only because
	// the host does not exist.
	code, stderr = f.run(t, "--allow-insecure-http")
	if code != ExitFailed || strings.Contains(stderr, "refusing plain http://") || !strings.Contains(stderr, "no Matrix homeserver answers") {
		t.Errorf("with --allow-insecure-http: exit %d, want %d and an unreachable server:\n%s", code, ExitFailed, stderr)
	}
}

// TestCAFile: a homeserver behind TLS with a private CA is refused (certificate not
// trusted) until --ca-file names the CA.
func TestCAFile(t *testing.T) {
	f := newPreflightFixture(t, matrixtest.Options{})
	backend, err := url.Parse(f.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	tlsSrv := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(backend))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is on purpose
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	caFile := f.path("ca.pem")
	write(t, caFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})))
	f.opts["--homeserver"] = tlsSrv.URL

	code, stderr := f.run(t)
	if code != ExitFailed || !strings.Contains(stderr, "certificate") {
		t.Errorf("without --ca-file: exit %d, want %d and a certificate error:\n%s", code, ExitFailed, stderr)
	}
	if n := len(f.srv.Users()); n != 0 {
		t.Fatalf("%d accounts created over an untrusted connection", n)
	}

	code, stderr = f.run(t, "--ca-file", caFile)
	if code != 0 {
		t.Fatalf("with --ca-file: exit %d:\n%s", code, stderr)
	}
	if n := len(f.srv.Users()); n != 2 {
		t.Errorf("%d accounts created, want 2", n)
	}

	write(t, f.path("not-a-cert.pem"), "hello\n")
	f.opts["--credentials"] = f.path("credentials-3.age")
	code, stderr = f.run(t, "--ca-file", f.path("not-a-cert.pem"))
	if code != ExitUsage || !strings.Contains(stderr, "no PEM certificate") {
		t.Errorf("--ca-file without a certificate: exit %d, want %d:\n%s", code, ExitUsage, stderr)
	}
}
