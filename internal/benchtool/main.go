// Command provision-bench measures provision end to end against the targets of
// docs/BENCHMARKS.md and prints the results as Markdown. `make bench` runs it through
// scripts/bench, which also runs the Go benchmarks of the hot pieces.
//
//	go build -o bin/provision ./cmd/provision
//	go build -o bin/provision-bench ./internal/benchtool
//	bin/provision-bench -provision bin/provision [-only nowork,million,...] > results.md
//
// Each scenario compares provision, run as a child process with everything on
// (validation, generation, journal, report, age encryption), with what the server
// allows, measured in the same run:
//
//   - nowork: a server that does no work (provision-bench serve, its own process):
//     a raw request loop and provision, each at its best concurrency; provision's CPU
//     per user.
//
//   - million: a 1,000,000-row roster checked (provision check), then provisioned
//     against the no-work server; wall time and peak RSS of each.
//
//   - rate: --rate R held over 20 s, measured by the server.
//
//   - storm: a server that answers 429 above its rate; no user may fail.
//
//   - auto: --rate auto against a server of limited capacity and against a 429
//     limit, compared with the best fixed setting.
//
//   - dendrite: a real Dendrite at bcrypt cost 10 and 4: the raw loop at its best
//     concurrency, then provision.
//
//   - ldapsync: a nightly sync of a 100,000-person directory (slapd, scripts/slapd)
//     against a Synapse fake that already holds them all: nothing may change; wall
//     time and peak RSS against issue 15's 60 s and 64 MiB.
//
// `provision-bench serve` is the no-work server itself (see server.go);
// `provision-bench serve-synapse` is the Synapse fake of ldapsync (see ldapsync.go).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		if err := serveMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "provision-bench serve:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "serve-synapse" {
		if err := serveSynapse(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "provision-bench serve-synapse:", err)
			os.Exit(1)
		}
		return
	}
	if err := benchMain(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "provision-bench:", err)
		os.Exit(1)
	}
}

// scenarios in the order they run.
var scenarios = []struct {
	name string
	run  func(*bench) error
}{
	{"nowork", (*bench).nowork},
	{"million", (*bench).million},
	{"rate", (*bench).rate},
	{"storm", (*bench).storm},
	{"auto", (*bench).auto},
	{"dendrite", (*bench).dendrite},
	{"ldapsync", (*bench).ldapsync},
}

// bench is one run of the benchmarks.
type bench struct {
	ctx       context.Context
	self      string // this binary, for `serve`
	provision string // the provision binary under test
	work      *workdir
	out       *strings.Builder
	log       func(format string, args ...any)
	users     int // users per no-work measurement
	rows      int // rows of the big roster
}

func benchMain(args []string) error {
	fs := flag.NewFlagSet("provision-bench", flag.ContinueOnError)
	provision := fs.String("provision", "bin/provision", "the provision `binary` to measure")
	only := fs.String("only", "", "comma-separated scenarios to run (default all: "+scenarioNames()+")")
	users := fs.Int("users", 20000, "users per provision run against the no-work server")
	million := fs.Int("million", 1000000, "rows of the big roster")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bin, err := filepath.Abs(*provision)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w: build it first (go build -o bin/provision ./cmd/provision)", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "provision-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	secret := make([]byte, 24)
	rand.Read(secret)
	w, err := newWorkdir(dir, []byte(hex.EncodeToString(secret)))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{ctx: ctx, self: self, provision: bin, work: w, out: &strings.Builder{}, users: *users, rows: *million,
		log: func(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...) }}

	var want []string
	if *only != "" {
		want = strings.Split(*only, ",")
		for _, n := range want {
			if !strings.Contains(","+scenarioNames()+",", ","+n+",") {
				return fmt.Errorf("unknown scenario %q: choose from %s", n, scenarioNames())
			}
		}
	}
	started := time.Now()
	var failed []string
	for _, s := range scenarios {
		if want != nil && !slices.Contains(want, s.name) {
			continue
		}
		t := time.Now()
		b.log("%s ...", s.name)
		if err := s.run(b); err != nil {
			failed = append(failed, s.name)
			fmt.Fprintf(b.out, "\n**%s: failed to run: %v**\n", s.name, err)
			b.log("%s failed: %v", s.name, err)
		}
		b.log("%s done in %s", s.name, time.Since(t).Round(time.Second))
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Fprintf(b.out, "\n_Measured %s on %s in %s._\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine(), time.Since(started).Round(time.Second))
	fmt.Print(b.out.String())
	if len(failed) > 0 {
		return fmt.Errorf("scenarios that could not run: %s", strings.Join(failed, ", "))
	}
	return nil
}

func scenarioNames() string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return strings.Join(n, ",")
}

// machine describes where the numbers come from.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d × %s", numCPU(), model)
}

// pct formats a ratio as a percentage.
func pct(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*a/b)
}

// verdict marks a measured value against its target.
func verdict(ok bool) string {
	if ok {
		return "✅"
	}
	return "❌"
}
