package templates

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/provision-matrix/provision/internal/config"
)

// TestConfigListsEveryKey: provision.yaml names every setting this version knows, so
// an operator never has to look one up.
func TestConfigListsEveryKey(t *testing.T) {
	cfg := Config()
	fs := pflag.NewFlagSet("provision", pflag.ContinueOnError)
	config.RegisterFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" {
			return
		}
		if !strings.Contains(cfg, "\n# "+f.Name+":") && !strings.Contains(cfg, "\n"+f.Name+":") {
			t.Errorf("provision.yaml lacks %s", f.Name)
		}
	})
	contents := Contents()
	for _, name := range Files {
		if contents[name] == "" {
			t.Errorf("no contents for %s", name)
		}
	}
	if len(contents) != len(Files) {
		t.Errorf("%d contents for %d files", len(contents), len(Files))
	}
}
