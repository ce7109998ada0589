package manpage

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestWrite(t *testing.T) {
	root := &cobra.Command{Use: "tool [flags] FILE", Short: "Do a thing", Long: "Tool does a thing.\n\nExit codes:\n  0  fine", Example: "  tool x", Version: "v1"}
	root.Flags().String("out-file", "", "write to `FILE`")
	sub := &cobra.Command{Use: "check FILE", Short: "Check a file", Example: "  tool check x", Run: func(*cobra.Command, []string) {}}
	root.AddCommand(sub)
	var b bytes.Buffer
	if err := Write(&b, root, Page{Sections: []Section{{"FILES", ".hidden: a file"}}, SeeAlso: []string{"a-b(1)", "c(5)"}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		".TH TOOL 1 \"\" \"tool v1\" \"User Commands\"\n",
		"tool \\- do a thing\n",
		".B tool\n[\\fIflags\\fR] \\fIFILE\\fR\n",
		".B tool check\n\\fIFILE\\fR\n",
		"\\fB\\-\\-out\\-file\\fR \\fIFILE\\fR\nwrite to FILE\n",
		".SS \"tool check FILE\"\n.PP\nCheck a file.\n",
		".PP\nExit codes:\n.PP\n.RS 4\n.nf\n  0  fine\n.fi\n.RE\n",
		".SH FILES\n.PP\n\\&.hidden: a file\n",
		".SH \"SEE ALSO\"\n.BR a\\-b (1),\n.BR c (5)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the page lacks %q:\n%s", want, b.String())
		}
	}
}
