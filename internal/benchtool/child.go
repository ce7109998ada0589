package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"
)

// child is a finished process: how long it took and what it cost.
type child struct {
	wall      time.Duration
	cpu       time.Duration // user + system
	maxRSS    int64         // peak resident set, bytes (VmHWM, from wait4's rusage)
	exitCode  int
	stderrEnd string
}

// runChild runs bin with args and waits for it.
func runChild(ctx context.Context, bin string, args ...string) (child, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	start := time.Now()
	err := cmd.Run()
	c := child{wall: time.Since(start), stderrEnd: tailLines(stderr.String(), 8)}
	if cmd.ProcessState == nil {
		return c, fmt.Errorf("%s: %w", filepath.Base(bin), err)
	}
	c.exitCode = cmd.ProcessState.ExitCode()
	c.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		c.maxRSS = ru.Maxrss * 1024 // kilobytes on Linux
	}
	if err != nil {
		return c, fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, c.stderrEnd)
	}
	return c, nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// serverProc is a no-work server running in its own process, so that its CPU is not
// the client's.
type serverProc struct {
	url string
	cmd *exec.Cmd
}

// startServer starts `provision-bench serve` with args.
func startServer(self string, args ...string) (*serverProc, error) {
	cmd := exec.Command(self, append([]string{"serve"}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("start the no-work server: %w", err)
	}
	return &serverProc{url: strings.TrimSpace(line), cmd: cmd}, nil
}

func (s *serverProc) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// cpu is the CPU time the server process has used so far.
func (s *serverProc) cpu() time.Duration { return procCPU(s.cmd.Process.Pid) }

// procCPU is the CPU time process pid has used so far, from /proc/PID/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every Linux
// architecture Go runs on.
const clockTicks = 100

func (s *serverProc) stats() (stats, error) {
	var st stats
	resp, err := http.Get(s.url + "/_bench/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (s *serverProc) reset() error {
	resp, err := http.Post(s.url+"/_bench/reset", "application/json", nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// workdir holds what a provision run needs: a secret file, an age recipient, and a
// fresh directory per run for its outputs.
type workdir struct {
	dir        string
	secret     []byte
	secretFile string
	recipient  string
	runs       int
}

func newWorkdir(dir string, secret []byte) (*workdir, error) {
	w := &workdir{dir: dir, secret: secret}
	w.secretFile = filepath.Join(dir, "secret")
	if err := os.WriteFile(w.secretFile, secret, 0o600); err != nil {
		return nil, err
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, err
	}
	w.recipient = id.Recipient().String()
	return w, nil
}

// provisionArgs are the arguments of a run with everything on: the roster is
// validated, passwords generated, every user journaled (fsynced), reported, and the
// credentials encrypted with age.
func (w *workdir) provisionArgs(homeserver, secretFile, roster string, conc int, rate string, extra ...string) []string {
	w.runs++
	out := filepath.Join(w.dir, "run"+strconv.Itoa(w.runs))
	_ = os.MkdirAll(out, 0o700)
	args := []string{
		"run", "--homeserver", homeserver, "--shared-secret-file", secretFile,
		"--recipient", w.recipient, "--credentials", filepath.Join(out, "credentials.age"),
		"--report", filepath.Join(out, "report.csv"), "--journal", filepath.Join(out, "journal"),
		"--concurrency", strconv.Itoa(conc), "--rate", rate, "--quiet",
	}
	return append(append(args, extra...), roster)
}

// writeRoster writes a CSV roster of n users named prefix0000001 and on, with a
// display name and an email each.
func writeRoster(path, prefix string, n int) error { return writeRosterOf(path, prefix, n, true) }

// writeRosterOf writes a roster with or without display names and emails: a display
// name is one more thing a server stores, which the raw loop does not send.
func writeRosterOf(path, prefix string, n int, names bool) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	if names {
		bw.WriteString("localpart,displayname,email\n")
	} else {
		bw.WriteString("localpart\n")
	}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("%s%07d", prefix, i)
		if names {
			fmt.Fprintf(bw, "%s,User %d,%s@example.org\n", id, i, id)
		} else {
			fmt.Fprintf(bw, "%s\n", id)
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
