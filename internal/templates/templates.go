// Package templates holds the files provision init writes to start a setup from: a
// commented provision.yaml and two roster templates, and the steps that follow.
package templates

import (
	_ "embed"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/provision-matrix/provision/internal/config"
)

// Files are the names of the files init writes, in order.
var Files = []string{"provision.yaml", "roster.csv", "roster.yaml"}

// Contents are the files init writes, by name.
func Contents() map[string]string {
	return map[string]string{
		"provision.yaml": Config(),
		"roster.csv":     rosterCSV,
		"roster.yaml":    rosterYAML,
	}
}

var (
	// configHead is the part of provision.yaml that needs the operator's attention.
	//go:embed files/provision-head.yaml
	configHead string
	//go:embed files/roster.csv
	rosterCSV string
	//go:embed files/roster.yaml
	rosterYAML string
)

// configSkip are the flags configHead covers, or that cannot be set in the file.
var configSkip = map[string]bool{
	"config": true, "homeserver": true, "shared-secret-file": true, "synapse-config": true,
	"recipient": true, "report": true, "help": true,
}

// Config is provision.yaml: configHead, then every other setting, commented out with
// its default. It is made from the flag definitions, so it lists every key this
// version knows.
func Config() string {
	var b strings.Builder
	b.WriteString(configHead)
	b.WriteString("# Everything else, with its default. Uncomment to change.\n")
	fs := pflag.NewFlagSet("provision", pflag.ContinueOnError)
	fs.SortFlags = false
	config.RegisterFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if configSkip[f.Name] {
			return
		}
		_, usage := pflag.UnquoteUsage(f)
		b.WriteString("\n# " + usage + "\n")
		b.WriteString("# " + f.Name + ": " + yamlDefault(f) + "\n")
	})
	return b.String()
}

// yamlDefault writes a flag's default as a YAML value.
func yamlDefault(f *pflag.Flag) string {
	switch f.Value.Type() {
	case "stringArray", "stringSlice":
		return "[]"
	case "string":
		return strconv.Quote(f.DefValue)
	}
	return f.DefValue
}

// NextSteps is what init prints after writing the files into dir.
func NextSteps(dir string) string {
	in := ""
	if dir != "." {
		in = "cd " + dir + " && "
	}
	return `Next:
  1. Make your age key (apt install age):   ` + in + `age-keygen -o key.txt
     and put the public key it prints (age1...) under "recipient:" in provision.yaml.
  2. In provision.yaml, set homeserver and say where the registration shared secret
     is: shared-secret-file, or synapse-config for Synapse.
  3. Put your users in roster.csv (the two in it are examples), then:
       provision check roster.csv
       provision --config provision.yaml --dry-run roster.csv
       provision --config provision.yaml roster.csv
`
}
