package main

import (
	"context"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/provision-matrix/provision/internal/config"
)

const rootLong = `provision creates Matrix accounts in bulk on a Synapse or Dendrite homeserver.

It reads a roster (CSV or YAML), checks every row before it sends anything, generates
strong passwords, registers the users in parallel under a rate limit with the server's
registration shared secret, writes a report (no passwords in it) and hands the
passwords off encrypted with age to you, the operator, or to each user's own key.

Running it again is always safe: users who exist are reported as "exists" and never
touched, and an interrupted run resumes from its journal.

With a Synapse admin access token (--admin-token-file) it uses Synapse's admin API
instead and can keep the server in line with the roster from cron: --update changes
names, emails and admin flags, a "rooms" column joins people to rooms, and
--deactivate-missing deactivates the accounts provision created that left the roster.
"provision plan" shows what such a run would change.

Exit codes:
  0    every user was created or already existed
  1    some users failed (see the report), or the server could not be used
  2    bad flags, configuration or roster: nothing was sent
  3    another provision run is using the same journal (try again later)
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

// streams are the command's standard streams.
type streams struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	io := streams{stdin, stdout, stderr}
	root := &cobra.Command{
		Use:           "provision [flags] ROSTER",
		Short:         "Create Matrix accounts in bulk from a CSV or YAML roster",
		Long:          rootLong,
		Example:       rootExample,
		Args:          cobra.ArbitraryArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       shortVersion(),
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usage(err, "see "+c.CommandPath()+" --help")
	})
	// "provision ROSTER" is "provision run ROSTER": the common case needs no verb.
	config.RegisterFlags(root.Flags())
	root.RunE = func(cmd *cobra.Command, args []string) error { return runE(cmd, args, io) }
	root.AddCommand(
		newRunCmd(io),
		newCheckCmd(io),
		newPlanCmd(io),
		newRecoverCmd(io),
		newInitCmd(io),
		newCompletionCmd(io),
		newManCmd(io),
		newVersionCmd(io),
	)
	return root
}

func newRunCmd(io streams) *cobra.Command {
	c := &cobra.Command{
		Use:     "run [flags] ROSTER",
		Short:   "Create the roster's users (the default command)",
		Long:    rootLong,
		Example: rootExample,
		Args:    cobra.ArbitraryArgs,
	}
	config.RegisterFlags(c.Flags())
	c.RunE = func(cmd *cobra.Command, args []string) error { return runE(cmd, args, io) }
	return c
}

// loadConfig turns a command's flags and arguments into a Config; its errors are
// usage errors (exit 2).
func loadConfig(cmd *cobra.Command, args []string) (*config.Config, error) {
	cfg, err := config.Load(cmd.Flags(), args, os.Getenv)
	if err != nil {
		return nil, configError(err)
	}
	return cfg, nil
}

func runE(cmd *cobra.Command, args []string, io streams) error {
	cfg, err := loadConfig(cmd, args)
	if err != nil {
		return err
	}
	err = runProvision(cmd.Context(), cfg, io.stdin, io.stdout, io.stderr)
	return logFinalError(cfg, io.stderr, err)
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
