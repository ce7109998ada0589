package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/provision-matrix/provision/internal/manpage"
)

// TestEveryCommandHasExamples: every --help shows how the command is used, and the
// manual page made from the same definitions has every command and flag.
func TestEveryCommandHasExamples(t *testing.T) {
	root := newRootCmd(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	// "version" prints one line and takes nothing; "help" is cobra's.
	noExample := map[string]bool{"version": true, "help": true}
	var man bytes.Buffer
	if err := writeMan(&man, root); err != nil {
		t.Fatal(err)
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root {
			return
		}
		if c.Example == "" && !noExample[c.Name()] {
			t.Errorf("provision %s --help has no examples", c.Name())
		}
		if c != root && !strings.Contains(man.String(), ".SS \"provision "+manpage.Escape(c.Name())) {
			t.Errorf("the manual page lacks provision %s", c.Name())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" && !strings.Contains(man.String(), `\fB\-\-`+manpage.Escape(f.Name)+`\fR`) {
				t.Errorf("the manual page lacks --%s of provision %s", f.Name, c.Name())
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
