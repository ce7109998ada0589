package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/provision-matrix/provision/internal/password"
)

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, args []string, env map[string]string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("provision", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	// viper's AutomaticEnv reads the real environment: set what the case asks for.
	for k, v := range env {
		t.Setenv(k, v)
	}
	return Load(fs, fs.Args(), func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		if k == "HOME" {
			// Whoever runs the tests, the default state directory is the same.
			return testHome
		}
		return ""
	})
}

const testHome = "/home/tester"

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", "  s3cret-from-file \n", 0o600)
	cfgFile := writeFile(t, dir, "provision.yaml", "homeserver: https://from-config.example\nconcurrency: 7\nrate: 3\n", 0o644)

	c, err := load(t, []string{"--config", cfgFile, "--shared-secret-file", secret, "--concurrency", "9", "roster.csv"},
		map[string]string{"PROVISION_RATE": "5"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Homeserver != "https://from-config.example" {
		t.Errorf("homeserver = %q, want the config file's", c.Homeserver)
	}
	if c.Concurrency != 9 {
		t.Errorf("concurrency = %d, want the flag's 9", c.Concurrency)
	}
	if c.Rate != 5 {
		t.Errorf("rate = %v, want the environment's 5 over the config file's 3", c.Rate)
	}
	if string(c.SharedSecret) != "s3cret-from-file" {
		t.Errorf("secret not read and trimmed from the file")
	}
	if c.Roster != "roster.csv" || c.Journal != "" || c.StateDir != testHome+"/.local/state/provision" {
		t.Errorf("roster %q journal %q state dir %q, want the roster, no journal file (the CLI picks one per server) and ~/.local/state/provision",
			c.Roster, c.Journal, c.StateDir)
	}
	if !strings.HasPrefix(c.Credentials, "credentials-") || !strings.HasSuffix(c.Credentials, ".age") {
		t.Errorf("default credentials path %q", c.Credentials)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	s := Secret("hunter2-very-secret")
	for _, got := range []string{s.String(), s.GoString()} {
		if strings.Contains(got, "hunter2") {
			t.Errorf("secret printed: %s", got)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", "abc", 0o600)
	empty := writeFile(t, dir, "empty", " \n", 0o600)
	typo := writeFile(t, dir, "typo.yaml", "concurency: 3\n", 0o600)
	inline := writeFile(t, dir, "inline.yaml", "shared-secret: abc\n", 0o600)
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no roster", []string{"--shared-secret-file", secret}, nil, "no roster given"},
		{"two rosters", []string{"--shared-secret-file", secret, "a.csv", "b.csv"}, nil, "2 rosters given"},
		{"no secret", []string{"r.csv"}, nil, "no registration shared secret"},
		{"empty secret file", []string{"--shared-secret-file", empty, "r.csv"}, nil, "is empty"},
		{"missing secret file", []string{"--shared-secret-file", filepath.Join(dir, "nope"), "r.csv"}, nil, "no such file"},
		{"http to remote", []string{"--shared-secret-file", secret, "--homeserver", "http://matrix.example.invalid", "r.csv"}, nil, "refusing plain http://"},
		{"bad concurrency", []string{"--shared-secret-file", secret, "--concurrency", "0", "r.csv"}, nil, "--concurrency 0"},
		{"bad env number", []string{"--shared-secret-file", secret, "r.csv"}, map[string]string{"PROVISION_CONCURRENCY": "lots"}, `"lots" is not a valid value`},
		{"long password", []string{"--shared-secret-file", secret, "--password-length", "100", "r.csv"}, nil, "bcrypt"},
		{"stdin without format", []string{"--shared-secret-file", secret, "-"}, nil, "needs --format"},
		{"bad report ext", []string{"--shared-secret-file", secret, "--report", "out.txt", "r.csv"}, nil, ".csv or .json"},
		{"config typo", []string{"--config", typo, "--shared-secret-file", secret, "r.csv"}, nil, `did you mean "concurrency"`},
		{"secret in config", []string{"--config", inline, "r.csv"}, nil, "never goes in the config file"},
		{"blank secret in env", []string{"r.csv"}, map[string]string{"PROVISION_SHARED_SECRET": "  \n"}, "PROVISION_SHARED_SECRET is blank"},
		{"blank token in env", []string{"--shared-secret-file", secret, "r.csv"}, map[string]string{"PROVISION_ADMIN_TOKEN": " "}, "PROVISION_ADMIN_TOKEN is blank"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.args, tc.env)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *config.Error (exit 2)", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			userError(t, err)
			if strings.Contains(err.Error(), "abc") && tc.name != "secret in config" {
				t.Errorf("error quotes the secret: %q", err)
			}
		})
	}
}

func TestHTTPAllowedToLoopbackAndWhenAsked(t *testing.T) {
	secret := writeFile(t, t.TempDir(), "secret", "abc", 0o600)
	for _, hs := range []string{"http://localhost:8008", "http://127.0.0.1:8008", "http://[::1]:8008"} {
		if _, err := load(t, []string{"--shared-secret-file", secret, "--homeserver", hs, "r.csv"}, nil); err != nil {
			t.Errorf("%s: %v", hs, err)
		}
	}
	if _, err := load(t, []string{"--shared-secret-file", secret, "--allow-insecure-http", "--homeserver", "http://hs.example.invalid", "r.csv"}, nil); err != nil {
		t.Errorf("--allow-insecure-http: %v", err)
	}
}

func TestSecretFromEnvironment(t *testing.T) {
	c, err := load(t, []string{"r.csv"}, map[string]string{"PROVISION_SHARED_SECRET": " envsecret\n"})
	if err != nil {
		t.Fatal(err)
	}
	if string(c.SharedSecret) != "envsecret" || c.SharedSecretSource != "PROVISION_SHARED_SECRET" {
		t.Errorf("secret from env: %q from %q", c.SharedSecret, c.SharedSecretSource)
	}
}

func TestSecretFileWarnings(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "secret", "abc", 0o644)
	_, warn, err := ReadSecretFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(warn) != 1 || !strings.Contains(warn[0], "chmod 600") {
		t.Errorf("warnings for a 0644 secret file = %q, want a chmod 600 hint", warn)
	}
	p2 := writeFile(t, dir, "secret2", "abc", 0o600)
	if _, warn, _ := ReadSecretFile(p2); len(warn) != 0 {
		t.Errorf("a 0600 file got warnings %q", warn)
	}
	multi := writeFile(t, dir, "multi", "abc\ndef\n", 0o600)
	if _, _, err := ReadSecretFile(multi); err == nil {
		t.Errorf("a two-line secret file was accepted")
	}
}

func TestSynapseConfigs(t *testing.T) {
	dir := t.TempDir()
	secretFile := writeFile(t, dir, "reg_secret", "from-path\n", 0o600)
	main := writeFile(t, dir, "homeserver.yaml", `
server_name: example.org
password_config:
  policy:
    enabled: true
    minimum_length: 15
    require_digit: true
    require_symbol: true
`, 0o644)
	frag := writeFile(t, dir, "secret.yaml", "registration_shared_secret_path: "+secretFile+"\n", 0o600)
	both := writeFile(t, dir, "both.yaml", "registration_shared_secret: x\n", 0o600)
	emptyInline := writeFile(t, dir, "empty.yaml", "registration_shared_secret: ''\n", 0o600)
	inline := writeFile(t, dir, "inline.yaml", "registration_shared_secret: inline-secret\n", 0o644)

	sc, err := ReadSynapseConfigs([]string{main, frag})
	if err != nil {
		t.Fatal(err)
	}
	if sc.ServerName != "example.org" || string(sc.SharedSecret) != "from-path" {
		t.Errorf("got server %q secret %q", sc.ServerName, sc.SharedSecret)
	}
	want := password.Policy{MinLength: 15, RequireDigit: true, RequireSymbol: true}
	if sc.Policy != want {
		t.Errorf("policy %+v, want %+v", sc.Policy, want)
	}

	if _, err := ReadSynapseConfigs([]string{frag, both}); err == nil || !strings.Contains(err.Error(), "both registration_shared_secret") {
		t.Errorf("both forms: err = %v", err)
	}
	if _, err := ReadSynapseConfigs([]string{emptyInline}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty inline secret: err = %v", err)
	}
	sc, err = ReadSynapseConfigs([]string{inline})
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Warnings) == 0 || !strings.Contains(sc.Warnings[0], "chmod 600") {
		t.Errorf("a world-readable homeserver.yaml holding the secret gave no warning: %q", sc.Warnings)
	}

	// Through Load: the flag is repeatable and server_name is taken.
	c, err := load(t, []string{"--synapse-config", main, "--synapse-config", frag, "r.csv"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "example.org" || string(c.SharedSecret) != "from-path" || c.Policy.MinLength != 15 {
		t.Errorf("Load with --synapse-config: %q %q %+v", c.ServerName, c.SharedSecret, c.Policy)
	}
}

func FuzzReadSynapseConfig(f *testing.F) {
	f.Add([]byte("server_name: example.org\nregistration_shared_secret: abc\n"))
	f.Add([]byte("password_config: {policy: {enabled: true, minimum_length: 10}}"))
	f.Add([]byte("registration_shared_secret_path: /nonexistent\n"))
	f.Add([]byte("a: &a [*a]"))
	if b, err := os.ReadFile("../../samples/synapse-homeserver.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "hs.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		sc, err := ReadSynapseConfigs([]string{p})
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Hint == "" {
				t.Fatalf("rejection without a hint: %v", err)
			}
			return
		}
		if sc == nil {
			t.Fatal("nil config without error")
		}
	})
}

func FuzzReadSecretFile(f *testing.F) {
	f.Add([]byte("abc\n"))
	f.Add([]byte(""))
	f.Add([]byte("a\nb"))
	f.Add([]byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, _, err := ReadSecretFile(p)
		if err != nil {
			if strings.Contains(err.Error(), string(data)) && len(strings.TrimSpace(string(data))) > 3 {
				t.Fatalf("error quotes the file's content: %v", err)
			}
			return
		}
		if len(s) == 0 || strings.ContainsAny(string(s), "\n\r\x00") {
			t.Fatalf("accepted an unusable secret %q", s)
		}
	})
}
