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
	var quiet *silentError
	if !errors.As(err, &quiet) {
		fmt.Fprintf(stderr, "provision: %v\n", err)
	}
	return codeOf(err)
}
