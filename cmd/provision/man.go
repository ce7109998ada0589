package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/provision-matrix/provision/internal/manpage"
)

const manExample = `  # Read it
  provision man | man -l -

  # Install it
  provision man | sudo tee /usr/local/share/man/man1/provision.1 >/dev/null && sudo mandb -q`

func newManCmd(io streams) *cobra.Command {
	return &cobra.Command{
		Use:   "man",
		Short: "Print provision's manual page (roff) on standard output",
		Long: `Print the manual page provision(1), in roff, made from the same definitions as
--help: every command, flag and example.`,
		Example: manExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeMan(io.stdout, cmd.Root())
		},
	}
}

// writeMan writes provision(1): the command tree, then what --help does not say.
func writeMan(w io.Writer, root *cobra.Command) error {
	return manpage.Write(w, root, manpage.Page{
		RootAlias: "run",
		Sections: []manpage.Section{
			{Title: "ENVIRONMENT", Text: `Every option is also an environment variable: PROVISION_ and the option's name in capitals with - as _, e.g. PROVISION_HOMESERVER, PROVISION_RATE. A flag given on the command line wins over the environment, which wins over the --config file.

PROVISION_SHARED_SECRET holds the registration shared secret itself, and PROVISION_ADMIN_TOKEN a Synapse admin's access token: secrets are never flags.`},
			{Title: "FILES", Text: `provision.journal (or REPORT.journal next to --report): the journal that lets an interrupted run resume; the passwords in it are encrypted with a key derived from the shared secret.

credentials-TIME.age: the passwords of created users, unless --credentials names another file.`},
		},
		SeeAlso: []string{"age(1)", "age-keygen(1)", "register_new_matrix_user(1)"},
	})
}
