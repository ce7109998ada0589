package main

import (
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/pipeline"
	"github.com/provision-matrix/provision/internal/redact"
)

const recoverLong = `recover writes every password that a journal still holds and that was never
handed off into a new age file for the given recipients, and lists whose they are.

A run hands each password off (the credentials file, the welcome files) and only then
records in its journal that nothing more is owed. A run killed at the wrong moment, a
credentials file deleted by mistake, or a journal set aside with --fresh can leave
passwords that exist only in the journal: recover gets them back.

The journal is the one a run against the same server uses: the server's journal in
--state-dir (name it with --server-name when the state directory holds several), or
--journal FILE. Give the same secret as the runs (--shared-secret-file, --admin-token-file,
--mas-client-secret-file or the PROVISION_ variables): the journal's passwords are
encrypted with a key derived from it.

Users whose last request got no answer are listed as "unknown": their account may or
may not have taken the password. Run the same provision command again (without
--fresh): it finds out, by logging in, and hands off what it finds. recover never sends
anything to the server. It takes the journal's lock, so it waits for no run: while a
run is using the journal it exits 3.`

const recoverExample = `  # Get back the passwords that an interrupted run did not hand off
  provision recover --shared-secret-file /etc/provision/secret \
    --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p \
    --credentials recovered.age

  # The state directory holds journals of two servers: name one
  provision recover --server-name example.org --recipient "$(cat ~/.ssh/id_ed25519.pub)" ...`

func newRecoverCmd(io streams) *cobra.Command {
	c := &cobra.Command{
		Use:     "recover [flags]",
		Short:   "Write the passwords a journal holds that were never handed off to a new age file",
		Long:    recoverLong,
		Example: recoverExample,
		Args:    cobra.NoArgs,
	}
	config.RegisterFlags(c.Flags())
	c.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := config.LoadWithoutRoster(cmd.Flags(), os.Getenv)
		if err != nil {
			return configError(err)
		}
		if !cmd.Flags().Changed("credentials") && os.Getenv("PROVISION_CREDENTIALS") == "" {
			cfg.Credentials = "recovered-" + strings.TrimPrefix(cfg.Credentials, "credentials-")
		}
		secrets := secretsOf(cfg)
		return logFinalError(cfg, io.stderr, redacted(explain(cfg, recoverRun(cfg, secrets, io.stdout, io.stderr)), secrets))
	}
	return c
}

// recoverRun is provision recover with the terminal UI.
func recoverRun(cfg *config.Config, secrets *redact.Set, stdout, stderr io.Writer) error {
	ui := newUI(uiOptionsOf(cfg), stderr, secrets)
	defer ui.close()
	return pipeline.Recover(cfg, observer{ui, cfg}, stdout)
}
