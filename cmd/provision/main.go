package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes. They are part of provision's interface: cron jobs and scripts branch on
// them, so they never change meaning.
const (
	ExitOK          = 0   // every user is created or was already there
	ExitFailed      = 1   // some users failed, or the server could not be used; see the report
	ExitUsage       = 2   // bad flags, configuration or roster: nothing was sent
	ExitLocked      = 3   // another provision run holds the journal's lock
	ExitInterrupted = 130 // stopped by Ctrl-C or SIGTERM; run the same command again to resume
)

// exitCoder is an error that knows its exit code.
type exitCoder interface{ ExitCode() int }

func main() { os.Exit(mainExit()) }

// mainExit is main up to the exit code: the CLI tests run it as the provision command.
func mainExit() int {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\nprovision: %v: finishing the requests already sent, then writing the report and credentials (press Ctrl-C again to quit at once)\n", s)
		cancel(errSignal{s})
		<-sigs
		// The journal's records are each checksummed and appended whole, so stopping
		// here loses nothing that was acknowledged: a re-run resumes from it.
		fmt.Fprintln(os.Stderr, "provision: quitting at once; run the same command again to resume from the journal")
		os.Exit(ExitInterrupted)
	}()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stopProfile()
	signal.Stop(sigs)
	return exitCode(err, os.Stderr)
}

// stopProfile ends the CPU profile of a build with -tags profile (profile.go).
var stopProfile = func() {}

type errSignal struct{ sig os.Signal }

func (e errSignal) Error() string { return "received " + e.sig.String() }

// exitCode prints err (if it has not been printed) and maps it to an exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var ec exitCoder
	code := ExitFailed
	if errors.As(err, &ec) {
		code = ec.ExitCode()
	} else if errors.Is(err, context.Canceled) {
		code = ExitInterrupted
	}
	var quiet *silentError
	if !errors.As(err, &quiet) {
		fmt.Fprintf(stderr, "provision: %v\n", err)
	}
	return code
}

// silentError carries an exit code for an outcome that has already been explained on
// stderr (the summary of a run with failures, for example).
type silentError struct{ code int }

func (e *silentError) Error() string { return fmt.Sprintf("exit %d", e.code) }
func (e *silentError) ExitCode() int { return e.code }

// usageError is a mistake in how provision was called (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
func (e usageError) ExitCode() int { return ExitUsage }

// failure is a run that could not do its work (exit 1), with a hint.
type failure struct {
	err  error
	hint string
}

func (e failure) Error() string {
	if e.hint == "" {
		return e.err.Error()
	}
	return e.err.Error() + "\n  hint: " + e.hint
}
func (e failure) Unwrap() error { return e.err }
func (e failure) ExitCode() int { return ExitFailed }
