package config

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Files named by mistake: a device that never ends, a secret file, Synapse's own
// config. Each must fail with the file's name and a reason, and never with what the
// file holds.
func TestConfigFileMistakes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const secretValue = "Zq8vN3xT-registration-secret-7Hk2"
	secret := writeFile(t, dir, "secret", secretValue+"\n", 0o600)
	synapse := writeFile(t, dir, "homeserver.yaml", "server_name: example.org\nregistration_shared_secret: \""+secretValue+"\"\nlisteners: []\n", 0o600)
	broken := writeFile(t, dir, "broken.yaml", "server_name: example.org\nregistration_shared_secret: \""+secretValue+"\n  macaroon_secret_key: x\n", 0o600)
	unknownAnchor := writeFile(t, dir, "anchor.yaml", "concurrency: *"+secretValue+"\n", 0o600)
	tabs := writeFile(t, dir, "tabs.yaml", "concurrency: 4\n\trate: 2\n", 0o600)
	dup := writeFile(t, dir, "dup.yaml", "rate: 2\nconcurrency: 4\nRate: 3\n", 0o600)
	list := writeFile(t, dir, "list.yaml", "- rate: 2\n", 0o600)
	big := writeFile(t, dir, "big.yaml", "# "+strings.Repeat("x", maxConfigFile)+"\n", 0o600)
	ok := writeFile(t, dir, "secret-ok", "s3cret\n", 0o600)

	tests := []struct {
		name string
		args []string
		want []string // every one must be in the error
	}{
		{"a secret file as --config", []string{"--config", secret}, []string{"config file " + secret + ": line 1, column 1: the file is a single value", "--shared-secret-file"}},
		{"homeserver.yaml as --config", []string{"--config", synapse}, []string{"unknown key(s): listeners, registration_shared_secret, server_name", "pass it with --synapse-config"}},
		{"broken homeserver.yaml as --config", []string{"--config", broken}, []string{"config file " + broken + ": line 2: not valid YAML"}},
		{"an unknown anchor", []string{"--config", unknownAnchor}, []string{"config file " + unknownAnchor + ": not valid YAML"}},
		{"a tab", []string{"--config", tabs}, []string{"a tab used for indentation?"}},
		{"a key twice", []string{"--config", dup}, []string{`line 3, column 1: key "Rate" is given twice (first on line 1)`}},
		{"a list", []string{"--config", list}, []string{"line 1, column 1: the top level is not key: value settings"}},
		{"a big file", []string{"--config", big}, []string{"config file " + big + " is larger than 1 MiB"}},
		{"a directory", []string{"--config", dir}, []string{"is a directory"}},
		{"a broken --synapse-config", []string{"--synapse-config", broken}, []string{"Synapse config " + broken + ": line 2: not valid YAML"}},
		{"a secret file as --synapse-config", []string{"--synapse-config", secret}, []string{"Synapse config " + secret + ": line 1, column 1: the file is a single value"}},
	}
	if runtime.GOOS == "linux" {
		tests = append(tests,
			struct {
				name string
				args []string
				want []string
			}{"/dev/zero as --config", []string{"--config", "/dev/zero"}, []string{"config file /dev/zero is larger than 1 MiB"}},
			struct {
				name string
				args []string
				want []string
			}{"/dev/zero as --synapse-config", []string{"--synapse-config", "/dev/zero"}, []string{"Synapse config /dev/zero is larger than 1 MiB"}},
			struct {
				name string
				args []string
				want []string
			}{"/dev/zero as --shared-secret-file", []string{"--shared-secret-file", "/dev/zero"}, []string{"shared secret: /dev/zero is larger than 64 KiB: that is not a secret file"}},
			struct {
				name string
				args []string
				want []string
			}{"/dev/zero as --admin-token-file", []string{"--shared-secret-file", ok, "--admin-token-file", "/dev/zero"}, []string{"admin token: /dev/zero is larger than 64 KiB"}},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, append(tt.args, "r.csv"), nil)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			userError(t, err, tt.want...)
			for _, leak := range []string{secretValue, secretValue[:6], "macaroon"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error shows the file's content %q:\n%s", leak, err)
				}
			}
		})
	}
}

func TestParseYAMLMapping(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		keys int
		err  string
	}{
		{in: "", keys: 0},
		{in: "# only a comment\n", keys: 0},
		{in: "~\n", keys: 0},
		{in: "rate: 2\nrecipient: [a, b]\n", keys: 2},
		{in: "a: b\n  c: d\n", err: "line 2: not valid YAML: mapping values are not allowed in this context"},
		{in: "[a]: 1\n", err: "line 1, column 1: a key must be a plain name"},
		{in: "base: &b {x: 1}\n<<: *b\n", err: "line 2, column 1: a key must be a plain name"},
		{in: "hunter2\n", err: "line 1, column 1: the file is a single value, not key: value settings"},
	} {
		m, err := parseYAMLMapping([]byte(tt.in))
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || len(m) != tt.keys):
			t.Errorf("%q: %d keys, error %v; want %d keys", tt.in, len(m), err, tt.keys)
		}
	}
}

func FuzzParseYAMLMapping(f *testing.F) {
	f.Add([]byte("rate: 2\n"))
	f.Add([]byte("s3cret-value\n"))
	f.Add([]byte("a: *nope-secret\n"))
	f.Add([]byte("x: \"unterminated-secret\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := parseYAMLMapping(data)
		if err == nil {
			return
		}
		var ye *yamlError
		if !errors.As(err, &ye) {
			t.Fatalf("error %T, want *yamlError", err)
		}
		// The reason is one of a fixed set, or names a duplicate key.
		if !strings.HasPrefix(ye.Reason, "key ") {
			for _, w := range strings.Fields(string(data)) {
				if len(w) > 12 && strings.Contains(ye.Reason, w) {
					t.Fatalf("reason %q quotes the input", ye.Reason)
				}
			}
		}
	})
}

// The sample config file stays readable by the stricter reader.
func TestSampleConfigReads(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("provision", pflag.ContinueOnError)
	RegisterFlags(fs)
	known := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) { known[f.Name] = true })
	if err := readConfigFile(viper.New(), "../../samples/provision.yaml", known); err != nil {
		t.Fatal(err)
	}
}
