package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/provision-matrix/provision/internal/config"
	"github.com/provision-matrix/provision/internal/handoff"
	"github.com/provision-matrix/provision/internal/report"
	"github.com/provision-matrix/provision/internal/roster"
)

const checkLong = `Check a roster without contacting any server: every row is validated as a run
would validate it, and every problem is listed at once as FILE:LINE:COLUMN: what is
wrong — how to fix it.

Exit status 0 means the roster is valid, 2 that it has problems (or a flag is wrong).

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
  provision check --server-name example.org team.csv`

func newCheckCmd(io streams) *cobra.Command {
	var format, columns, serverName string
	var list bool
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
	c.RunE = func(cmd *cobra.Command, args []string) error {
		mapping, err := roster.ParseColumns(columns)
		if err != nil {
			return usageError{err}
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
		src, err := openRoster(cfg.Roster, cfg.Format, io.stdin)
		if err != nil {
			return explain(cfg, err)
		}
		defer src.Close()
		opts := roster.Options{
			Format:         rosterFormat(cfg),
			ServerName:     serverName,
			Columns:        mapping,
			CheckRecipient: func(s string) error { _, err := handoff.ParseRecipient(s); return err },
		}
		stats, err := src.Check(opts)
		if err != nil {
			return explain(cfg, err)
		}
		if list {
			w := csv.NewWriter(io.stdout)
			_ = w.Write([]string{"line", "localpart", "displayname", "email", "admin", "note"})
			err := src.Each(opts, func(u roster.User) error {
				note := ""
				if u.Original != "" {
					note = "from " + u.Original
				}
				return w.Write([]string{strconv.Itoa(u.Line), u.Localpart, report.EscapeCell(u.DisplayName),
					report.EscapeCell(u.Email), strconv.FormatBool(u.Admin), report.EscapeCell(note)})
			})
			w.Flush()
			if err != nil {
				return explain(cfg, err)
			}
			if err := w.Error(); err != nil {
				return err
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
		return nil
	}
	return c
}
