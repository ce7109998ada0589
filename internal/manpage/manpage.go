// Package manpage renders a cobra command tree as one manual page in roff: the
// root command's synopsis, description and options, then every visible subcommand
// with its options and examples, then sections the program supplies.
//
// One page for the whole tree, not one per subcommand as cobra/doc makes: a few
// short pages would scatter the manual, and cobra/doc needs go-md2man.
package manpage

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Page is what a manual page has beyond the command tree.
type Page struct {
	// RootAlias names a subcommand that is the root command by another name
	// ("provision run"): its options are listed once, under OPTIONS.
	RootAlias string
	// Sections follow EXAMPLES, in order: ENVIRONMENT, FILES, and the like.
	Sections []Section
	// SeeAlso are other pages, as "age(1)".
	SeeAlso []string
}

// Section is a section of the page; its text is help text, as in a command's Long.
type Section struct {
	Title, Text string
}

// Write writes the manual page of root, in section 1, on w.
func Write(w io.Writer, root *cobra.Command, p Page) error {
	name := root.Name()
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s 1 \"\" %s \"User Commands\"\n", strings.ToUpper(name), Quote(name+" "+root.Version))
	// No hyphenation and a ragged right margin: flag names and paths must be
	// copied as they are printed.
	b.WriteString(".nh\n.ad l\n")
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", Escape(name), Escape(lowerFirst(root.Short)))

	b.WriteString(".SH SYNOPSIS\n")
	_, rootArgs, _ := strings.Cut(root.Use, " ")
	fmt.Fprintf(&b, ".B %s\n%s\n", Escape(name), synopsisArgs(rootArgs))
	for _, c := range commands(root) {
		sub, rest, _ := strings.Cut(c.Use, " ")
		fmt.Fprintf(&b, ".br\n.B %s %s\n", Escape(name), Escape(sub))
		if args := synopsisArgs(rest); args != "" {
			b.WriteString(args + "\n")
		}
	}

	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString(Text(root.Long))

	b.WriteString(".SH OPTIONS\n")
	b.WriteString(flags(root.LocalFlags()))

	b.WriteString(".SH COMMANDS\n")
	for _, c := range commands(root) {
		fmt.Fprintf(&b, ".SS %s\n", Quote(name+" "+c.Use))
		long := c.Long
		if long == "" || long == root.Long {
			long = c.Short + "."
		}
		b.WriteString(Text(long))
		if p.RootAlias != "" && c.Name() == p.RootAlias {
			fmt.Fprintf(&b, ".PP\nIt takes every option of %s itself (see OPTIONS).\n", Escape(name))
		} else if opts := flags(c.LocalNonPersistentFlags()); opts != "" {
			b.WriteString(".PP\nOptions:\n")
			b.WriteString(opts)
		}
		if c.Example != "" && c.Example != root.Example {
			b.WriteString(".PP\nExamples:\n")
			b.WriteString(Pre(c.Example))
		}
	}

	b.WriteString(".SH EXAMPLES\n")
	b.WriteString(Pre(root.Example))

	for _, s := range p.Sections {
		b.WriteString(heading(s.Title))
		b.WriteString(Text(s.Text))
	}

	if len(p.SeeAlso) > 0 {
		b.WriteString(heading("SEE ALSO"))
		for i, ref := range p.SeeAlso {
			page, sect, _ := strings.Cut(ref, "(")
			fmt.Fprintf(&b, ".BR %s (%s", Escape(page), sect)
			if i < len(p.SeeAlso)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// heading is a section heading, quoted when it has more than one word.
func heading(title string) string {
	if strings.Contains(title, " ") {
		return ".SH " + Quote(title) + "\n"
	}
	return ".SH " + Escape(title) + "\n"
}

// commands are the subcommands the page documents: the visible ones.
func commands(root *cobra.Command) []*cobra.Command {
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
		parts = append(parts, "\\fI"+Escape(f)+"\\fR")
	}
	return strings.Join(parts, " ")
}

// flags lists a flag set's visible flags, with their defaults.
func flags(fs *pflag.FlagSet) string {
	var b strings.Builder
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" || f.Name == "version" {
			return
		}
		name, usage := pflag.UnquoteUsage(f)
		b.WriteString(".TP\n")
		if f.Shorthand != "" {
			fmt.Fprintf(&b, "\\fB\\-%s\\fR, ", Escape(f.Shorthand))
		}
		fmt.Fprintf(&b, "\\fB\\-\\-%s\\fR", Escape(f.Name))
		if name != "" {
			fmt.Fprintf(&b, " \\fI%s\\fR", Escape(name))
		}
		b.WriteString("\n")
		line := usage
		if d := f.DefValue; d != "" && d != "false" && d != "[]" && d != "0" && d != "0s" {
			line += " (default " + d + ")"
		}
		b.WriteString(Line(line) + "\n")
	})
	return b.String()
}

// Text turns help text into paragraphs: indented blocks stay as they are.
func Text(s string) string {
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
				b.WriteString(".PP\n" + Line(lines[0]) + "\n")
				lines = lines[1:]
			}
			b.WriteString(Pre(strings.Join(lines, "\n")))
			continue
		}
		b.WriteString(".PP\n")
		b.WriteString(Line(strings.Join(lines, " ")) + "\n")
	}
	return b.String()
}

// Pre is a block printed as written.
func Pre(s string) string {
	var b strings.Builder
	b.WriteString(".PP\n.RS 4\n.nf\n")
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(Line(l) + "\n")
	}
	b.WriteString(".fi\n.RE\n")
	return b.String()
}

// Line escapes one line of text so that roff prints it as it is.
func Line(s string) string {
	s = Escape(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = "\\&" + s
	}
	return s
}

// Escape escapes the characters roff would interpret: the backslash, and the
// hyphen, which roff may print as a typographic hyphen that breaks copied commands.
func Escape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// Quote is s as one quoted roff argument.
func Quote(s string) string {
	return `"` + strings.ReplaceAll(Escape(s), `"`, `\(dq`) + `"`
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
