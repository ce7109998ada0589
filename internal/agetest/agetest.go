// Package agetest finds the age and age-keygen commands for tests that open the
// handoff the way an operator does.
//
// The commands on PATH come first: they are what an operator runs, so the tests keep
// checking against them wherever they are installed. Otherwise the module's own
// tools are used, the ones `go tool age` runs (go.mod pins them with `tool`
// directives, at the version of the age library provision encrypts with), so that a
// machine with only Go needs no system package.
//
// A test that cannot find either is skipped, unless PROVISION_REQUIRE_AGE=1 (as in
// `make test` and CI), where it fails: CI must never pass by skipping.
package agetest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Command returns the path of the named command, "age" or "age-keygen": the one on
// PATH, else the module's tool. When there is neither it skips the test, or fails it
// when PROVISION_REQUIRE_AGE=1.
func Command(tb testing.TB, name string) string {
	tb.Helper()
	p, err := Lookup(name)
	if err != nil {
		if os.Getenv("PROVISION_REQUIRE_AGE") == "1" {
			tb.Fatalf("PROVISION_REQUIRE_AGE=1: %v", err)
		}
		tb.Skip(err)
	}
	return p
}

var tools sync.Map // name → *lookup

type lookup struct {
	once sync.Once
	path string
	err  error
}

// Lookup is Command for a caller that has another way to do without it. The module's
// tool is built once per process; `go tool -n` leaves the binary in Go's build cache,
// so later test runs find it there without building again.
func Lookup(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	v, _ := tools.LoadOrStore(name, &lookup{})
	l := v.(*lookup)
	l.once.Do(func() { l.path, l.err = goTool(name) })
	return l.path, l.err
}

// goTool builds the module's tool name (if Go's cache does not have it) and returns
// the path of its binary.
func goTool(name string) (string, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		// go test puts GOROOT/bin first on PATH; this is for a test binary run by hand.
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(goCmd, "tool", "-n", name)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("no %s on PATH, and `go tool -n %s` failed: %v: %s", name, name, err, strings.TrimSpace(stderr.String()))
	}
	p := strings.TrimSpace(string(out))
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no %s on PATH, and `go tool -n %s` printed %q, which is not a file: %v", name, name, p, err)
	}
	return p, nil
}
