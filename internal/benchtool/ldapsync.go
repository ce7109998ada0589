package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
	"github.com/provision-matrix/provision/internal/reconcile"
)

// ldapPeople is the directory of the ldapsync scenario.
const ldapPeople = 100000

// ldapsync: the nightly sync of issue 15. slapd holds 100,000 people (scripts/slapd,
// loaded with slapadd), the Synapse fake already holds every one of them as provision
// created them, and `provision run --update --deactivate-missing` against the
// directory must change nothing, in under 60 s and 64 MiB. It runs twice: with the
// ldap preset, whose email addresses --update compares (the user list does not carry
// them, so every account is read once), and with a mapping without email, where the
// user list alone tells that nothing changed.
func (b *bench) ldapsync() error {
	dir := filepath.Join(b.work.dir, "slapd")
	env, err := startSlapd(b.ctx, dir, ldapPeople)
	if err != nil {
		return err
	}
	defer stopSlapd(dir)

	const token = "bench-admin-token"
	tokenFile := filepath.Join(b.work.dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		return err
	}

	o := b.out
	fmt.Fprintf(o, "\n### A nightly sync of a %d-person directory\n\n", ldapPeople)
	fmt.Fprintf(o, "slapd (scripts/slapd, mdb, LDAPS, paged search) holds %d people; the Synapse fake (internal/matrixtest, "+
		"in a process of its own) already holds every one of them as provision created them. "+
		"`provision run --admin-token-file … --update --deactivate-missing <ldaps URL>` must change nothing.\n\n", ldapPeople)
	profile := os.Getenv("PROVISION_CPUPROFILE")
	defer func() {
		if profile != "" {
			os.Setenv("PROVISION_CPUPROFILE", profile)
		}
	}()
	fmt.Fprintf(o, "| mapping | wall time | CPU | peak RSS | requests | the fake's CPU | target |\n|---|---:|---:|---:|---|---:|---|\n")
	for _, v := range []struct{ name, mapping string }{
		{"ldap preset (email compared: one GET per account)", "ldap"},
		{"`localpart=uid,displayname=displayName\\|cn` (no email: the user list alone)", "localpart=uid,displayname=displayName|cn"},
	} {
		if profile != "" {
			// A provision built with -tags profile: one CPU profile per run.
			os.Setenv("PROVISION_CPUPROFILE", profile+"."+strings.Fields(v.name)[0])
		}
		// A fresh fake per run, in its own process: a child's peak RSS from wait4 is
		// at least its parent's at the fork (Linux carries the high-water mark across
		// exec), so the parent must stay small.
		srv, err := startSynapse(b.self, token, ldapPeople)
		if err != nil {
			return err
		}
		setup := srv.cpu()
		c, rows, err := b.runSync(srv.url, tokenFile, env, v.mapping)
		fakeCPU := srv.cpu() - setup
		after, serr := srv.stop()
		if err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		if after.Registrations != 0 {
			return fmt.Errorf("%s: the sync created %d accounts", v.mapping, after.Registrations)
		}
		reqs := map[string]int{}
		var total int
		for k, n := range after.Requests {
			reqs[k] = n
			total += n
		}
		for k := range reqs {
			// "unrecognized" counts requests for paths the fake does not serve: the
			// preflight's GETs asking whether logins are delegated to MAS
			// (auth_metadata, auth_issuer), which a Synapse without MAS answers 404.
			if !strings.HasPrefix(k, "GET ") && k != "unrecognized" {
				return fmt.Errorf("%s: the sync changed something: %d × %s", v.mapping, reqs[k], k)
			}
		}
		if rows[reportUnchanged] != ldapPeople || len(rows) != 1 {
			return fmt.Errorf("%s: want %d unchanged rows, the report has %v", v.mapping, ldapPeople, rows)
		}
		ok := c.wall < 60*time.Second && c.maxRSS < 64<<20
		b.log("  %s: %s, peak RSS %.1f MiB, %d requests", v.mapping, c.wall.Round(time.Millisecond), mib(c.maxRSS), total)
		fmt.Fprintf(o, "| %s | %.1f s | %.1f s | %.1f MiB | %s | %.1f s | < 60 s, < 64 MiB %s |\n", v.name, c.wall.Seconds(),
			c.cpu.Seconds(), mib(c.maxRSS), requestsText(reqs), fakeCPU.Seconds(), verdict(ok))
	}
	return nil
}

const reportUnchanged = "unchanged"

// runSync runs the sync and returns the child's figures and the report's rows by status.
func (b *bench) runSync(homeserver, tokenFile string, env map[string]string, mapping string) (child, map[string]int, error) {
	b.work.runs++
	out := filepath.Join(b.work.dir, "run"+strconv.Itoa(b.work.runs))
	if err := os.MkdirAll(out, 0o700); err != nil {
		return child{}, nil, err
	}
	report := filepath.Join(out, "report.csv")
	c, err := runChild(b.ctx, b.provision, "run", "--homeserver", homeserver, "--admin-token-file", tokenFile,
		"--update", "--deactivate-missing", "--ldap-map", mapping,
		"--ldap-bind-dn", env["BIND_DN"], "--ldap-password-file", env["BIND_PASSWORD_FILE"], "--ca-file", env["CA_FILE"],
		"--recipient", b.work.recipient, "--credentials", filepath.Join(out, "credentials.age"),
		"--report", report, "--journal", filepath.Join(out, "journal"), "--quiet",
		// Its own state: the roster count of a 100,000-person sync must not reach the
		// operator's (~/.local/state/provision), where it would hold later runs back.
		"--state-dir", filepath.Join(out, "state"),
		// The filter of the ldap preset, which a whole mapping does not bring.
		env["LDAPS_URL"]+"/"+env["BASE_DN"]+"??sub?(objectClass=inetOrgPerson)")
	if err != nil {
		return c, nil, err
	}
	rows, err := reportStatuses(report)
	return c, rows, err
}

// reportStatuses counts a report's rows by status.
func reportStatuses(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("the report: %w", err)
	}
	col := -1
	for i, h := range head {
		if h == "status" {
			col = i
		}
	}
	if col < 0 {
		return nil, fmt.Errorf("the report has no status column: %v", head)
	}
	out := map[string]int{}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("the report: %w", err)
		}
		out[rec[col]]++
	}
}

func requestsText(reqs map[string]int) string {
	var parts []string
	for _, k := range []string{"GET /_synapse/admin/v2/users", "GET /_synapse/admin/v2/users/{userID}"} {
		if n := reqs[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d × `%s`", n, k))
		}
	}
	other := 0
	for k, n := range reqs {
		if k != "GET /_synapse/admin/v2/users" && k != "GET /_synapse/admin/v2/users/{userID}" {
			other += n
		}
	}
	if other > 0 {
		parts = append(parts, fmt.Sprintf("%d other (the preflight's)", other))
	}
	return strings.Join(parts, ", ")
}

// startSlapd runs `scripts/slapd start DIR N`, tied to this process (--parent), and
// returns DIR/env.
func startSlapd(ctx context.Context, dir string, n int) (map[string]string, error) {
	script, err := filepath.Abs(filepath.Join("scripts", "slapd"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("%w: run the bench from the repository (scripts/bench does)", err)
	}
	cmd := exec.CommandContext(ctx, "bash", script, "start", dir, strconv.Itoa(n), "--parent", strconv.Itoa(os.Getpid()))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		stopSlapd(dir)
		return nil, fmt.Errorf("scripts/slapd start: %w\n%s", err, tailLines(stderr.String(), 8))
	}
	b, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		stopSlapd(dir)
		return nil, err
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = strings.ReplaceAll(v, `\,`, ",") // sh quoting of the DNs
		}
	}
	for _, k := range []string{"LDAPS_URL", "BASE_DN", "BIND_DN", "BIND_PASSWORD_FILE", "CA_FILE"} {
		if env[k] == "" {
			stopSlapd(dir)
			return nil, fmt.Errorf("scripts/slapd: %s/env has no %s", dir, k)
		}
	}
	return env, nil
}

func stopSlapd(dir string) {
	script, _ := filepath.Abs(filepath.Join("scripts", "slapd"))
	_ = exec.Command("bash", script, "stop", dir).Run()
}

// synapseProc is the Synapse fake of `provision-bench serve-synapse`.
type synapseProc struct {
	url   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startSynapse starts the Synapse fake holding n people as provision created them.
func startSynapse(self, token string, n int) (*synapseProc, error) {
	cmd := exec.Command(self, "serve-synapse", "-token", token, "-users", strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &synapseProc{cmd: cmd, stdin: in, out: bufio.NewReader(out)}
	line, err := s.out.ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("start the Synapse fake: %w", err)
	}
	s.url = strings.TrimSpace(line)
	return s, nil
}

// cpu is the CPU time the fake has used so far.
func (s *synapseProc) cpu() time.Duration { return procCPU(s.cmd.Process.Pid) }

// stop ends the fake (closing its stdin) and returns what it counted.
func (s *synapseProc) stop() (matrixtest.Counts, error) {
	var c matrixtest.Counts
	_ = s.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- json.NewDecoder(s.out).Decode(&c) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		err = errors.New("the Synapse fake did not stop")
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	return c, err
}

// serveSynapse is `provision-bench serve-synapse`: the Synapse fake (internal/matrixtest)
// holding -users people user00001… as provision created them (display name and email
// as scripts/slapd writes them, provision's marker), plus the admin of -token. It
// prints its URL, serves until its stdin closes, then prints its counts as JSON.
func serveSynapse(args []string) error {
	fs := flag.NewFlagSet("serve-synapse", flag.ContinueOnError)
	token := fs.String("token", "", "the admin's access token")
	users := fs.Int("users", 0, "people to hold")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tb := &benchTB{}
	defer tb.cleanup()
	srv := matrixtest.NewServer(tb, matrixtest.Options{AdminToken: *token})
	for i := 1; i <= *users; i++ {
		lp := fmt.Sprintf("user%05d", i)
		name := fmt.Sprintf("User %d", i)
		if i%7 == 0 {
			name = fmt.Sprintf("Person %d", i) // no displayName: the preset falls back on cn
		}
		srv.AddUser(matrixtest.FakeUser{Localpart: lp, DisplayName: name,
			ThreePIDs:   []matrix.ThreePID{{Medium: "email", Address: lp + "@example.org"}},
			ExternalIDs: []matrix.ExternalID{reconcile.Marker(srv.UserID(lp))}}, "")
	}
	fmt.Println(srv.URL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return json.NewEncoder(os.Stdout).Encode(srv.Counts())
}

// benchTB is the testing.TB that matrixtest.NewServer asks for, outside a test: it
// only takes Helper and Cleanup from it.
type benchTB struct {
	testing.TB
	cleanups []func()
}

func (t *benchTB) Helper()          {}
func (t *benchTB) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }

func (t *benchTB) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
