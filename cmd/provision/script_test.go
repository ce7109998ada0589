package main

import (
	"bytes"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/provision-matrix/provision/internal/agetest"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
)

// TestMain lets the test binary run as the provision command in the scripts of
// testdata/script: "exec provision ..." there runs main, in a process of its own.
func TestMain(m *testing.M) {
	testscript.Main(isolated{m}, map[string]func(){"provision": func() { os.Exit(mainExit()) }})
}

// isolated runs the tests with a throwaway state directory as the default: a test
// that names none of its own (no --state-dir, --journal or XDG_STATE_HOME of its own)
// must not write journals into the home of whoever runs the tests.
type isolated struct{ m *testing.M }

func (i isolated) Run() int {
	dir, err := os.MkdirTemp("", "provision-test-state-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	os.Setenv("XDG_STATE_HOME", dir)
	return i.m.Run()
}

// TestScripts runs the CLI end to end, as an operator would, from the scripts in
// testdata/script. Each script gets a fresh fake Synapse (see scriptSetup) and these
// commands besides testscript's own:
//
//	homeserver synapse|dendrite [mas] [policy]
//	                       replace the script's server with a new one of that dialect
//	                       (mas: behind Matrix Authentication Service, no shared-secret
//	                       endpoint; policy: publishes a password policy)
//	hsuser LOCALPART...    accounts that exist before provision runs
//	hsfail LOCALPART STATUS ERRCODE
//	                       the server refuses to register LOCALPART, every time
//	                       (STATUS 0: no longer)
//	hscount N              the server has created exactly N accounts
//	hslogin FILE           every user_id,password row of the credentials CSV FILE
//	                       logs in on the server
//
// Run with -u (go test -run TestScripts -args -u... see testscript) to update
// expected files in the scripts.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "script"),
		Setup:               scriptSetup,
		Cmds:                scriptCmds,
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
	})
}

type scriptKey int

const (
	keyHS scriptKey = iota
	keyT
)

// scriptHS is a script's fake homeserver and the faults it injects.
type scriptHS struct {
	secret string
	srv    *matrixtest.Server

	mu   sync.Mutex
	fail map[string]matrixtest.Fault // by localpart
}

func (h *scriptHS) start(t testing.TB, o matrixtest.Options) {
	o.SharedSecret = h.secret
	o.Faults = h.faults
	h.srv = matrixtest.NewServer(t, o)
}

// faults refuses the registrations hsfail named. It peeks at the request body for
// the username and puts the body back for the server to read.
func (h *scriptHS) faults(r *http.Request) matrixtest.Fault {
	if r.Method != http.MethodPost || r.URL.Path != "/_synapse/admin/v1/register" {
		return matrixtest.Fault{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.fail) == 0 {
		return matrixtest.Fault{}
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req struct {
		Username string `json:"username"`
	}
	_ = json.Unmarshal(body, &req)
	return h.fail[req.Username]
}

// scriptSetup starts a fake Synapse for the script (stopped when the script ends),
// and writes what an operator has at hand:
//
//	secret.txt   the registration shared secret (mode 0600); also $SECRET_FILE, and
//	             the secret itself in $SHARED_SECRET
//	key.txt      an age identity; $RECIPIENT is its public key
//	$HOMESERVER  the server's URL, $SERVER_NAME its server_name
func scriptSetup(env *testscript.Env) error {
	t, ok := env.T().(testing.TB)
	if !ok {
		return fmt.Errorf("testscript's T is not a testing.TB")
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	hs := &scriptHS{secret: hex.EncodeToString(b), fail: map[string]matrixtest.Fault{}}
	hs.start(t, matrixtest.Options{})
	env.Values[keyHS] = hs
	env.Values[keyT] = t

	secretFile := filepath.Join(env.WorkDir, "secret.txt")
	if err := os.WriteFile(secretFile, []byte(hs.secret+"\n"), 0o600); err != nil {
		return err
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(env.WorkDir, "key.txt"), []byte(id.String()+"\n"), 0o600); err != nil {
		return err
	}
	env.Setenv("HOMESERVER", hs.srv.URL())
	env.Setenv("XDG_STATE_HOME", filepath.Join(env.WorkDir, ".state"))
	env.Setenv("SERVER_NAME", hs.srv.ServerName())
	env.Setenv("SECRET_FILE", secretFile)
	env.Setenv("SHARED_SECRET", hs.secret) // for the scripts that pass it in the environment
	env.Setenv("RECIPIENT", id.Recipient().String())
	return ageOnPath(env)
}

// ageOnPath lets the scripts' `exec age` run where age is not installed, with the
// module's own tool (go tool age), so that their [exec:age] lines are skipped only
// when there is no age at all, and then fail under PROVISION_REQUIRE_AGE=1.
func ageOnPath(env *testscript.Env) error {
	if _, err := exec.LookPath("age"); err == nil {
		return nil
	}
	p, err := agetest.Lookup("age")
	if err != nil {
		if os.Getenv("PROVISION_REQUIRE_AGE") == "1" {
			return fmt.Errorf("PROVISION_REQUIRE_AGE=1: %w", err)
		}
		return nil
	}
	env.Setenv("PATH", filepath.Dir(p)+string(filepath.ListSeparator)+env.Getenv("PATH"))
	return nil
}

var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"homeserver": func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) == 0 {
			ts.Fatalf("usage: homeserver synapse|dendrite [mas] [policy]")
		}
		hs := ts.Value(keyHS).(*scriptHS)
		var o matrixtest.Options
		switch args[0] {
		case "synapse":
		case "dendrite":
			o.Dialect = matrixtest.Dendrite
		default:
			ts.Fatalf("unknown dialect %q", args[0])
		}
		for _, a := range args[1:] {
			switch a {
			case "mas":
				o.MAS = true
			case "policy":
				o.PasswordPolicy = &matrix.PasswordPolicy{MinLength: 30, RequireDigit: true, RequireSymbol: true, RequireLowercase: true, RequireUppercase: true}
			default:
				ts.Fatalf("unknown option %q", a)
			}
		}
		hs.start(ts.Value(keyT).(testing.TB), o)
		ts.Setenv("HOMESERVER", hs.srv.URL())
		ts.Setenv("SERVER_NAME", hs.srv.ServerName())
	},
	"hsuser": func(ts *testscript.TestScript, neg bool, args []string) {
		hs := ts.Value(keyHS).(*scriptHS)
		for _, lp := range args {
			hs.srv.AddUser(matrixtest.FakeUser{Localpart: lp}, "an-old-password")
		}
	},
	"hsfail": func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 3 {
			ts.Fatalf("usage: hsfail LOCALPART STATUS ERRCODE")
		}
		status, err := strconv.Atoi(args[1])
		ts.Check(err)
		hs := ts.Value(keyHS).(*scriptHS)
		hs.mu.Lock()
		if status == 0 {
			delete(hs.fail, args[0])
		} else {
			hs.fail[args[0]] = matrixtest.Fault{Status: status, Errcode: args[2]}
		}
		hs.mu.Unlock()
	},
	"hscount": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: hscount N")
		}
		want, err := strconv.Atoi(args[0])
		ts.Check(err)
		got := ts.Value(keyHS).(*scriptHS).srv.Counts().Registrations
		switch {
		case neg && got == want:
			ts.Fatalf("the server created %d accounts; want another number", got)
		case !neg && got != want:
			ts.Fatalf("the server created %d accounts; want %d", got, want)
		}
	},
	"hslogin": func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 1 {
			ts.Fatalf("usage: hslogin CREDENTIALS.csv")
		}
		recs, err := csv.NewReader(strings.NewReader(ts.ReadFile(args[0]))).ReadAll()
		ts.Check(err)
		if len(recs) < 2 || strings.Join(recs[0], ",") != "user_id,password,homeserver" {
			ts.Fatalf("%s is not a credentials file: %q", args[0], recs)
		}
		hs := ts.Value(keyHS).(*scriptHS)
		for _, r := range recs[1:] {
			lp := strings.TrimPrefix(strings.SplitN(r[0], ":", 2)[0], "@")
			if !hs.srv.CheckPassword(lp, r[1]) {
				ts.Fatalf("%s cannot log in with the password in %s", r[0], args[0])
			}
			if r[2] != hs.srv.URL() {
				ts.Fatalf("%s: homeserver %q, want %q", r[0], r[2], hs.srv.URL())
			}
		}
		ts.Logf("%d users log in", len(recs)-1)
	},
}
