package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/handoff"
	"github.com/provision-matrix/provision/internal/pipeline"
	"github.com/provision-matrix/provision/internal/roster"
)

const checkLong = `Check a roster without contacting any server: every row is validated as a run
would validate it, and every problem is listed at once as FILE:LINE:COLUMN: what is
wrong — how to fix it.

Exit status 0 means the roster is valid, 2 that it has problems (or a flag is wrong).

The roster may also be a directory, given as an LDAP URL: check then searches it
once, with --ldap-bind-dn and the password from --ldap-password-file or
PROVISION_LDAP_PASSWORD, and reports every entry a run would refuse, by its DN and
attribute (see docs/ldap.md).

With --columns, check reads an export from another system as a run would, and --list
shows the localpart, display name and email each person will get: the way to review
an import before creating anyone.

check reads only its own flags, not --config files or PROVISION_ variables. The
password policy of a server is not known offline: a run checks supplied passwords
against it again.`

const checkExample = `  # Check a roster
  provision check team.csv

  # Preview what a Google Workspace export becomes, as CSV
  provision check --columns google --list users.csv

  # Check a roster read from standard input
  generate-roster | provision check --format csv -

  # Check that every user ID fits in 255 bytes on your server
  provision check --server-name example.org team.csv

  # Check what a directory search gives, and list the people
  provision check --list --ldap-bind-dn cn=provision,ou=services,dc=example,dc=org \
    --ldap-password-file /run/secrets/ldap 'ldaps://ldap.example.org/ou=people,dc=example,dc=org'`

func newCheckCmd(io streams) *cobra.Command {
	var format, columns, serverName string
	var list bool
	var dir config.Config // a directory roster's settings
	var ldapPasswordFile string
	c := &cobra.Command{
		Use:     "check [flags] ROSTER",
		Short:   "Validate a roster offline (exit 0 valid, 2 problems)",
		Long:    checkLong,
		Example: checkExample,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usage(fmt.Errorf("check takes one roster, got %d arguments", len(args)), "provision check team.csv (or - with --format for standard input)")
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "", "roster format: csv or yaml (default: from the file name; needed for stdin)")
	c.Flags().StringVar(&columns, "columns", "", "read a CSV export as it is: google, entra, okta, or a `MAPPING` such as localpart=uid,displayname=cn,email=mail")
	c.Flags().StringVar(&serverName, "server-name", "", "the server_name of user IDs, to check their length")
	c.Flags().BoolVar(&list, "list", false, "print the users as CSV on standard output: line,localpart,displayname,email,admin,note")
	c.Flags().StringVar(&dir.LDAPBase, "ldap-base", "", "directory roster: search below this base `DN` instead of the URL's")
	c.Flags().StringVar(&dir.LDAPFilter, "ldap-filter", "", "directory roster: select people with this LDAP `FILTER`")
	c.Flags().StringVar(&dir.LDAPScope, "ldap-scope", "", "directory roster: search `SCOPE` sub, one or base")
	c.Flags().StringVar(&dir.LDAPBindDN, "ldap-bind-dn", "", "directory roster: bind as this read-only service account `DN`")
	c.Flags().StringVar(&ldapPasswordFile, "ldap-password-file", "", "read the directory service account's password from `FILE` (or set PROVISION_LDAP_PASSWORD)")
	c.Flags().BoolVar(&dir.LDAPStartTLS, "ldap-start-tls", false, "directory roster: upgrade an ldap:// connection with StartTLS")
	c.Flags().StringVar(&dir.CAFile, "ca-file", "", "directory roster: trust the CAs in this PEM `FILE` for the directory's certificate")
	c.Flags().StringVar(&dir.LDAPMap, "ldap-map", config.DefaultLDAPMap, "directory roster: ldap, ad, or a `MAPPING` such as localpart=uid,displayname=cn,email=mail")
	c.Flags().StringVar(&dir.RoomsMap, "rooms-map", "", "directory roster: the YAML `FILE` of group DN or cn → rooms")
	c.Flags().StringVar(&dir.SSOProvider, "sso-provider", "", "the identity provider `ID` of users given an sso_subject")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		mapping, err := roster.ParseColumns(columns)
		if err != nil {
			return usageError{err}
		}
		if strings.Contains(args[0], "://") {
			return checkDirectory(cmd.Context(), io, &dir, args[0], ldapPasswordFile, serverName, list)
		}
		cfg := &config.Config{Roster: args[0], Format: format}
		switch cfg.Format {
		case "", "csv", "yaml":
		case "yml":
			cfg.Format = "yaml"
		default:
			return usage(fmt.Errorf("unknown roster format %q", format), "use --format csv or --format yaml")
		}
		if cfg.Roster == "-" && cfg.Format == "" {
			return usage(errors.New("a roster read from standard input needs --format"), "add --format csv or --format yaml")
		}
		src, err := pipeline.OpenRoster(cfg.Roster, cfg.Format, io.stdin)
		if err != nil {
			return explain(cfg, err)
		}
		defer src.Close()
		return checkSource(io, cfg, src, mapping, serverName, list)
	}
	return c
}

// checkSource checks a roster file or a directory and, with list, prints its users.
func checkSource(io streams, cfg *config.Config, src pipeline.RosterSource, mapping *roster.Mapping, serverName string, list bool) error {
	opts := roster.Options{
		Format:         pipeline.RosterFormat(cfg),
		ServerName:     serverName,
		Columns:        mapping,
		CheckRecipient: func(s string) error { _, err := handoff.ParseRecipient(s); return err },
	}
	stats, err := src.Check(opts)
	if err != nil {
		return explain(cfg, err)
	}
	if list {
		lw := roster.NewListWriter(io.stdout)
		err := src.Each(opts, lw.Write)
		ferr := lw.Flush()
		if err != nil {
			return explain(cfg, err)
		}
		if ferr != nil {
			return ferr
		}
	}
	name := src.Name()
	if name == "-" {
		name = "standard input"
	}
	msg := fmt.Sprintf("%s: %d user%s, no problems", name, stats.Users, plural(stats.Users))
	if stats.Lowercased > 0 && mapping == nil {
		msg += fmt.Sprintf(" (%d localpart%s with capitals will be lowercased)", stats.Lowercased, plural(stats.Lowercased))
	}
	// With --list, standard output is the CSV alone.
	out := io.stdout
	if list {
		out = io.stderr
	}
	fmt.Fprintln(out, msg)
	if d, ok := src.(*pipeline.DirectorySource); ok {
		fmt.Fprintln(io.stderr, d.Summary())
	}
	return nil
}

// checkDirectory is check for a directory roster: one search, validated as a run
// would validate it.
func checkDirectory(ctx context.Context, io streams, cfg *config.Config, url, passwordFile, serverName string, list bool) error {
	cfg.LDAPURL = url
	switch {
	case passwordFile != "":
		pw, _, err := config.ReadSecretFile(passwordFile)
		if err != nil {
			return usage(fmt.Errorf("--ldap-password-file: %w", err), "")
		}
		cfg.LDAPPassword = pw
	case os.Getenv(config.EnvLDAPPassword) != "" && cfg.LDAPBindDN != "":
		cfg.LDAPPassword = config.Secret(os.Getenv(config.EnvLDAPPassword))
	}
	src, err := pipeline.NewDirectorySource(ctx, cfg)
	if err != nil {
		return explain(cfg, err)
	}
	defer src.Close()
	return checkSource(io, cfg, src, nil, serverName, list)
}
