package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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

// writeMan writes one manual page for the whole command tree: a page per subcommand
// (as cobra/doc makes) would scatter six short pages, and would need go-md2man.
func writeMan(w io.Writer, root *cobra.Command) error {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH PROVISION 1 \"\" %s \"User Commands\"\n", roffQuote("provision "+root.Version))
	// No hyphenation and a ragged right margin: flag names and paths must be
	// copied as they are printed.
	b.WriteString(".nh\n.ad l\n")
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "provision \\- %s\n", roffEscape(lowerFirst(root.Short)))

	b.WriteString(".SH SYNOPSIS\n")
	fmt.Fprintf(&b, ".B provision\n[\\fIflags\\fR] \\fIROSTER\\fR\n")
	for _, c := range manCommands(root) {
		name, rest, _ := strings.Cut(c.Use, " ")
		fmt.Fprintf(&b, ".br\n.B provision %s\n", roffEscape(name))
		if args := synopsisArgs(rest); args != "" {
			b.WriteString(args + "\n")
		}
	}

	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString(roffText(root.Long))

	b.WriteString(".SH OPTIONS\n")
	b.WriteString(roffFlags(root.LocalFlags()))

	b.WriteString(".SH COMMANDS\n")
	for _, c := range manCommands(root) {
		fmt.Fprintf(&b, ".SS %s\n", roffQuote("provision "+c.Use))
		long := c.Long
		if long == "" || long == root.Long {
			long = c.Short + "."
		}
		b.WriteString(roffText(long))
		if c.Name() == "run" {
			b.WriteString(".PP\nIt takes every option of provision itself (see OPTIONS).\n")
		} else if opts := roffFlags(c.LocalNonPersistentFlags()); opts != "" {
			b.WriteString(".PP\nOptions:\n")
			b.WriteString(opts)
		}
		if c.Example != "" && c.Example != root.Example {
			b.WriteString(".PP\nExamples:\n")
			b.WriteString(roffPre(c.Example))
		}
	}

	b.WriteString(".SH EXAMPLES\n")
	b.WriteString(roffPre(root.Example))

	b.WriteString(".SH ENVIRONMENT\n")
	b.WriteString(roffText(`Every option is also an environment variable: PROVISION_ and the option's name in capitals with - as _, e.g. PROVISION_HOMESERVER, PROVISION_RATE. A flag given on the command line wins over the environment, which wins over the --config file.

PROVISION_SHARED_SECRET holds the registration shared secret itself, and PROVISION_ADMIN_TOKEN a Synapse admin's access token: secrets are never flags.`))

	b.WriteString(".SH FILES\n")
	b.WriteString(roffText(`provision.journal (or REPORT.journal next to --report): the journal that lets an interrupted run resume; the passwords in it are encrypted with a key derived from the shared secret.

credentials-TIME.age: the passwords of created users, unless --credentials names another file.`))

	b.WriteString(".SH \"SEE ALSO\"\n")
	b.WriteString(".BR age (1),\n.BR age\\-keygen (1),\n.BR register_new_matrix_user (1)\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// manCommands are the subcommands the page documents: the visible ones.
func manCommands(root *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() && c.Name() != "help" {
			out = append(out, c)
		}
	}
	return out
}

// synopsisArgs italicises the argument placeholders of a Use line.
func synopsisArgs(s string) string {
	var parts []string
	for _, f := range strings.Fields(s) {
		if f == "[flags]" {
			parts = append(parts, "[\\fIflags\\fR]")
			continue
		}
		parts = append(parts, "\\fI"+roffEscape(f)+"\\fR")
	}
	return strings.Join(parts, " ")
}

func roffFlags(fs *pflag.FlagSet) string {
	var b strings.Builder
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" || f.Name == "version" {
			return
		}
		name, usage := pflag.UnquoteUsage(f)
		b.WriteString(".TP\n")
		if f.Shorthand != "" {
			fmt.Fprintf(&b, "\\fB\\-%s\\fR, ", roffEscape(f.Shorthand))
		}
		fmt.Fprintf(&b, "\\fB\\-\\-%s\\fR", roffEscape(f.Name))
		if name != "" {
			fmt.Fprintf(&b, " \\fI%s\\fR", roffEscape(name))
		}
		b.WriteString("\n")
		line := usage
		if d := f.DefValue; d != "" && d != "false" && d != "[]" && d != "0" && d != "0s" {
			line += " (default " + d + ")"
		}
		b.WriteString(roffLine(line) + "\n")
	})
	return b.String()
}

// roffText turns help text into paragraphs: indented blocks stay as they are.
func roffText(s string) string {
	var b strings.Builder
	for _, para := range strings.Split(strings.TrimSpace(s), "\n\n") {
		lines := strings.Split(para, "\n")
		indented := false
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "  ") {
				indented = true
			}
		}
		if indented || strings.HasPrefix(lines[0], "  ") {
			// A heading line ("Exit codes:") followed by an indented list.
			if !strings.HasPrefix(lines[0], "  ") {
				b.WriteString(".PP\n" + roffLine(lines[0]) + "\n")
				lines = lines[1:]
			}
			b.WriteString(roffPre(strings.Join(lines, "\n")))
			continue
		}
		b.WriteString(".PP\n")
		b.WriteString(roffLine(strings.Join(lines, " ")) + "\n")
	}
	return b.String()
}

// roffPre is a block printed as written.
func roffPre(s string) string {
	var b strings.Builder
	b.WriteString(".PP\n.RS 4\n.nf\n")
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(roffLine(l) + "\n")
	}
	b.WriteString(".fi\n.RE\n")
	return b.String()
}

// roffLine escapes one line of text so that roff prints it as it is.
func roffLine(s string) string {
	s = roffEscape(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = "\\&" + s
	}
	return s
}

// roffEscape escapes the characters roff would interpret: the backslash, and the
// hyphen, which roff may print as a typographic hyphen that breaks copied commands.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

func roffQuote(s string) string {
	return `"` + strings.ReplaceAll(roffEscape(s), `"`, `\(dq`) + `"`
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
