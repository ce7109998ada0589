package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/provision-matrix/provision/internal/config"
)

const planLong = `plan shows what a run with the same flags would change on a Synapse server, one
line per change, and changes nothing:

  + @ann:example.org  create                        a new account
  + @ann:example.org  join #general:example.org     ... and the rooms it joins
  ~ @bob:example.org  displayname "B" -> "Bob"      an existing account changes (--update)
  ~ @bob:example.org  join #ops:example.org         ... joins a room the roster added (--update)
  ~ @dan:example.org  password reset (...)          a new password (--reset-passwords)
  - @cy:example.org  deactivate                     provision created it; the roster no
                                                    longer names it (--deactivate-missing)
  ! @root:example.org  keep: ...                    provision leaves it alone on purpose

then the counts. It needs a Synapse admin's access token (--admin-token-file or
PROVISION_ADMIN_TOKEN): it reads every account it compares through the admin API,
and with --deactivate-missing the whole user list, page by page. It writes no
report, no credentials and no journal; "provision --dry-run" with an admin token
prints the same plan.

A plan is refused (exit 3) while a run holding the same journal is changing the
server. If the plan deactivates more accounts than --max-deactivate allows, it says
so: a real run would stop before changing anything.`

const planExample = `  # What would tonight's sync do?
  provision plan --homeserver https://matrix.example.org \
    --admin-token-file /run/secrets/provision-admin-token \
    --update --deactivate-missing staff.csv

  # The same with the settings of the scheduled job
  provision plan --config /etc/provision/provision.yaml /srv/hr/staff.csv`

func newPlanCmd(io streams) *cobra.Command {
	c := &cobra.Command{
		Use:     "plan [flags] ROSTER",
		Short:   "Show what a sync with an admin token would change, changing nothing",
		Long:    planLong,
		Example: planExample,
		Args:    cobra.ArbitraryArgs,
	}
	config.RegisterFlags(c.Flags())
	c.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := loadConfig(cmd, args)
		if err != nil {
			return err
		}
		if cfg.AdminToken == nil {
			return usage(errors.New("provision plan needs a Synapse admin's access token: pass --admin-token-file FILE or set PROVISION_ADMIN_TOKEN"),
				"with only the shared secret, provision --dry-run ROSTER checks the roster and which accounts exist")
		}
		cfg.DryRun = true
		return logFinalError(cfg, io.stderr, runProvision(cmd.Context(), cfg, io.stdin, io.stdout, io.stderr))
	}
	return c
}
