package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/provision-matrix/provision/internal/config"
)

const initLong = `Write a commented provision.yaml and two roster templates (roster.csv and
roster.yaml) into DIR (default: the current directory), to start from.

init never overwrites anything: if one of the files exists, it writes none of them
and says which. No secret is written: provision.yaml points at the files that hold
them.`

const initExample = `  # Start a new setup in ./onboarding
  provision init onboarding
  cd onboarding

  # Make your age key, then put its public key under "recipient:" in provision.yaml
  age-keygen -o key.txt

  # Fill in roster.csv, check it, and see what would happen
  provision check roster.csv
  provision --config provision.yaml --dry-run roster.csv`

// initFiles are the files init writes, in order.
var initFiles = []string{"provision.yaml", "roster.csv", "roster.yaml"}

func newInitCmd(io streams) *cobra.Command {
	return &cobra.Command{
		Use:     "init [DIR]",
		Short:   "Write a commented provision.yaml and roster templates",
		Long:    initLong,
		Example: initExample,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usage(fmt.Errorf("init takes at most one directory, got %d arguments", len(args)), "provision init [DIR]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			contents := map[string]string{
				"provision.yaml": configTemplate(),
				"roster.csv":     rosterCSVTemplate,
				"roster.yaml":    rosterYAMLTemplate,
			}
			if err := writeNew(dir, initFiles, contents); err != nil {
				return err
			}
			fmt.Fprintf(io.stdout, "wrote %s in %s\n\n%s", strings.Join(initFiles, ", "), dir, nextSteps(dir))
			return nil
		},
	}
}

// writeNew creates every file of names in dir, or none: an existing one stops it
// before anything is written, and a failure part way removes what it wrote.
func writeNew(dir string, names []string, contents map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return usageError{fmt.Errorf("init: %w", err)}
	}
	var existing []string
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			existing = append(existing, filepath.Join(dir, n))
		}
	}
	if len(existing) > 0 {
		verb, them := "exist", "them"
		if len(existing) == 1 {
			verb, them = "exists", "it"
		}
		return usage(fmt.Errorf("init: %s already %s; nothing was written", strings.Join(existing, ", "), verb),
			fmt.Sprintf("move %s away, or run provision init in another directory", them))
	}
	var written []string
	for _, n := range names {
		path := filepath.Join(dir, n)
		// O_EXCL: a file that appeared since the check above is not replaced.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, err = f.WriteString(contents[n])
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(path)
			}
		}
		if err != nil {
			for _, w := range written {
				os.Remove(w)
			}
			if errors.Is(err, fs.ErrExist) {
				return usageError{fmt.Errorf("init: %s appeared while init was writing; nothing was written", path)}
			}
			return usageError{fmt.Errorf("init: %w", err)}
		}
		written = append(written, path)
	}
	return nil
}

func nextSteps(dir string) string {
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

// configHead is the part of provision.yaml that needs the operator's attention.
const configHead = `# provision.yaml — settings for: provision --config provision.yaml ROSTER
#
# Every key is a flag name (provision --help lists them). A flag on the command line,
# or an environment variable PROVISION_<NAME> (PROVISION_RATE=5), wins over this file.
# A misspelt key is an error, so a setting is never silently ignored.
#
# No secret belongs in this file: it points at the files that hold them.

# The URL your users' clients use (the one Element shows at login).
homeserver: http://localhost:8008

# The registration shared secret, kept out of the command line. Uncomment one:
#  - a file holding only the secret (mode 0600), the same as Dendrite's
#    client_api.registration_shared_secret or Synapse's registration_shared_secret:
# shared-secret-file: /etc/provision/registration-secret
#  - or Synapse's own config files; registration_shared_secret(_path), server_name
#    and the password policy are read from them (list NixOS's extraConfigFiles too):
# synapse-config:
#   - /etc/matrix-synapse/homeserver.yaml
#  - or the environment: PROVISION_SHARED_SECRET (systemd LoadCredential, a secret store).

# Who can read the generated passwords: age public keys (age-keygen -y key.txt prints
# yours) or SSH public keys. The credentials file is encrypted to every one of them.
# recipient:
#   - age1...

# The results report (no secrets in it): .csv or .json.
report: report.csv

`

// configSkip are the flags configHead covers, or that cannot be set in the file.
var configSkip = map[string]bool{
	"config": true, "homeserver": true, "shared-secret-file": true, "synapse-config": true,
	"recipient": true, "report": true, "help": true,
}

// configTemplate is provision.yaml: configHead, then every other setting, commented
// out with its default. It is made from the flag definitions, so it lists every key
// this version knows.
func configTemplate() string {
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

const rosterCSVTemplate = `localpart,displayname,email,admin
alice,Alice Example,alice@example.org,false
bob,"Bob Example, Jr.",bob@example.org,no
`

const rosterYAMLTemplate = `# A roster in YAML: the same keys as the CSV columns. Use it or roster.csv.
#
#   localpart    required: a-z 0-9 . _ = - / + (capitals are lowercased)
#   displayname  the name people see
#   email        their address
#   admin        true or false (default false)
#   user_type    empty for a person; e.g. bot
#   password     only to keep a password the person already has; empty = generate one
#   rooms        room IDs (!id:server) or aliases (#alias:server) to join
#   recipient    the person's own age or SSH public key: their password is then
#                encrypted to them alone
users:
  - localpart: alice
    displayname: Alice Example
    email: alice@example.org
  - localpart: bob
    displayname: Bob Example, Jr.
    email: bob@example.org
    admin: false
`
