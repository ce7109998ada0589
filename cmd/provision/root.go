package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/provision-matrix/provision/internal/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const rootLong = `provision creates Matrix accounts in bulk on a Synapse or Dendrite homeserver.

It reads a roster (CSV or YAML), checks every row before it sends anything, generates
strong passwords, registers the users in parallel under a rate limit with the server's
registration shared secret, writes a report (no passwords in it) and hands the
passwords off encrypted with age to you, the operator, or to each user's own key.

Running it again is always safe: users who exist are reported as "exists" and never
touched, and an interrupted run resumes from its journal.

Exit codes:
  0    every user was created or already existed
  1    some users failed (see the report), or the server could not be used
  2    bad flags, configuration or roster: nothing was sent
  3    another provision run is using the same journal
  130  interrupted (Ctrl-C, SIGTERM): run the same command again to resume

Secrets are never flags: give the shared secret in a file (--shared-secret-file), in the
environment (PROVISION_SHARED_SECRET), or let provision read it from Synapse's own
config (--synapse-config). Every flag can also be set in a --config file (same names)
or as an environment variable PROVISION_<NAME> (e.g. PROVISION_HOMESERVER).`

const rootExample = `  # Make an age key for yourself once (Debian/Ubuntu: apt install age)
  age-keygen -o ~/.config/provision-key.txt

  # Create the users of team.csv on your Synapse, reading the secret from its config
  provision --homeserver https://matrix.example.org \
    --synapse-config /etc/matrix-synapse/homeserver.yaml \
    --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p \
    --credentials team-credentials.age --report team-report.csv team.csv

  # Read the passwords
  age -d -i ~/.config/provision-key.txt team-credentials.age

  # See what would happen, without creating anyone
  provision --dry-run --shared-secret-file secret.txt team.csv`

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "provision [flags] ROSTER",
		Short:         "Create Matrix accounts in bulk from a CSV or YAML roster",
		Long:          rootLong,
		Example:       rootExample,
		Args:          cobra.ArbitraryArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	config.RegisterFlags(root.Flags())
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w\n  hint: see provision --help", err)}
	})
	root.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := config.Load(cmd.Flags(), args, os.Getenv)
		if err != nil {
			var ce *config.Error
			if errors.As(err, &ce) {
				return usageError{err}
			}
			return err
		}
		return runProvision(cmd.Context(), cfg, stdin, stdout, stderr)
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print provision's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintf(stdout, "provision %s\n", version)
		},
	})
	return root
}

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		return usageError{err}
	}
	return err
}
