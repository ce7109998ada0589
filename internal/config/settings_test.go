package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// userError checks what an operator sees for a configuration error: a *Error (exit
// 2) whose text says every one of want, whose message does not carry advice of its
// own (the hint is printed once, by Error) and whose hint is one line.
func userError(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one saying %q", want)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T %q is not a *config.Error (exit 2)", err, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error\n%s\ndoes not say %q", err, w)
		}
	}
	if strings.Contains(ce.Msg, "hint:") || strings.Contains(ce.Msg, "\n") {
		t.Errorf("message %q carries its own advice or line breaks", ce.Msg)
	}
	if ce.Hint == "" || strings.Contains(ce.Hint, "\n") || strings.Contains(ce.Hint, "hint:") {
		t.Errorf("hint %q: want one line of advice", ce.Hint)
	}
}

type settingsCase struct {
	name  string
	args  []string
	env   map[string]string
	want  []string           // error text; nil = no error
	check func(*Config) bool // for a valid config
}

func runSettings(t *testing.T, cases []settingsCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.args, tt.env)
			if tt.want != nil {
				userError(t, err, tt.want...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil && !tt.check(c) {
				t.Errorf("config %+v", c)
			}
		})
	}
}

func TestStateDir(t *testing.T) {
	secret := writeFile(t, t.TempDir(), "secret", "s3cret\n", 0o600)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	is := func(want string) func(*Config) bool {
		return func(c *Config) bool {
			if c.StateDir != want {
				t.Errorf("state dir %q, want %q", c.StateDir, want)
			}
			return c.Journal == ""
		}
	}
	runSettings(t, []settingsCase{
		{name: "HOME", args: []string{"--shared-secret-file", secret, "r.csv"},
			check: is("/home/tester/.local/state/provision")},
		{name: "XDG_STATE_HOME wins", args: []string{"--shared-secret-file", secret, "r.csv"}, env: map[string]string{"XDG_STATE_HOME": "/srv/state"},
			check: is("/srv/state/provision")},
		{name: "a relative XDG_STATE_HOME is ignored", args: []string{"--shared-secret-file", secret, "r.csv"}, env: map[string]string{"XDG_STATE_HOME": "state"},
			check: is("/home/tester/.local/state/provision")},
		{name: "flag", args: []string{"--shared-secret-file", secret, "--state-dir", "/var/lib/provision/", "r.csv"},
			check: is("/var/lib/provision")},
		{name: "relative flag made absolute", args: []string{"--shared-secret-file", secret, "--state-dir", "st", "r.csv"},
			check: is(filepath.Join(wd, "st"))},
		{name: "tilde from a config file", args: []string{"--shared-secret-file", secret, "r.csv"}, env: map[string]string{"PROVISION_STATE_DIR": "~/prov"},
			check: is("/home/tester/prov")},
		{name: "--journal still overrides", args: []string{"--shared-secret-file", secret, "--journal", "j.journal", "r.csv"},
			check: func(c *Config) bool { return c.Journal == "j.journal" }},
	})
}

func TestDefaultStateDir(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		env  map[string]string
		euid int
		want string
		err  string
	}{
		{name: "XDG", env: map[string]string{"XDG_STATE_HOME": "/x", "HOME": "/h"}, euid: 1000, want: "/x/provision"},
		{name: "HOME", env: map[string]string{"HOME": "/h"}, euid: 1000, want: "/h/.local/state/provision"},
		{name: "root with HOME", env: map[string]string{"HOME": "/root"}, euid: 0, want: "/root/.local/state/provision"},
		{name: "root without HOME", euid: 0, want: "/var/lib/provision"},
		{name: "a user without HOME", euid: 1000, err: "cannot tell where to keep the journals"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DefaultStateDir(func(k string) string { return tt.env[k] }, tt.euid)
			if tt.err != "" {
				userError(t, err, tt.err, "--state-dir")
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("DefaultStateDir = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestRetrySettings(t *testing.T) {
	secret := writeFile(t, t.TempDir(), "secret", "s3cret\n", 0o600)
	base := []string{"--shared-secret-file", secret}
	runSettings(t, []settingsCase{
		{name: "defaults", args: append(base, "r.csv"),
			check: func(c *Config) bool { return c.RetryBudget == 5*time.Minute && c.MaxRetryAfter == 10*time.Minute }},
		{name: "flags", args: append(base, "--retry-budget", "90s", "--max-retry-after", "1h", "r.csv"),
			check: func(c *Config) bool { return c.RetryBudget == 90*time.Second && c.MaxRetryAfter == time.Hour }},
		{name: "environment", args: append(base, "r.csv"), env: map[string]string{"PROVISION_RETRY_BUDGET": "2m"},
			check: func(c *Config) bool { return c.RetryBudget == 2*time.Minute }},
		{name: "zero budget", args: append(base, "--retry-budget", "0", "r.csv"), want: []string{"--retry-budget 0s must be positive", "5m"}},
		{name: "negative wait", args: append(base, "--max-retry-after", "-1m", "r.csv"), want: []string{"--max-retry-after -1m0s must be positive"}},
		{name: "not a duration", args: append(base, "r.csv"), env: map[string]string{"PROVISION_MAX_RETRY_AFTER": "soon"},
			want: []string{`max-retry-after: "soon" is not a valid value`, "PROVISION_MAX_RETRY_AFTER"}},
	})
}

func TestMAS(t *testing.T) {
	dir := t.TempDir()
	const clientSecret = "mas-Client-Secret-9f8e7d"
	cs := writeFile(t, dir, "client_secret", clientSecret+"\n", 0o600)
	open := writeFile(t, dir, "open_secret", clientSecret+"\n", 0o644)
	secret := writeFile(t, dir, "secret", "s3cret\n", 0o600)
	token := writeFile(t, dir, "token", "syt_admin\n", 0o600)
	mas := []string{"--mas", "https://auth.example.org/", "--mas-client-id", "01J9ZQ3N7V0XKQ2E1M4A5B6C7D", "--mas-client-secret-file", cs}
	with := func(extra ...string) []string { return append(append(append([]string{}, mas...), extra...), "r.csv") }
	runSettings(t, []settingsCase{
		{name: "MAS", args: with(), check: func(c *Config) bool {
			return c.Mode() == ModeMAS && c.MAS == "https://auth.example.org" && c.MASClientID == "01J9ZQ3N7V0XKQ2E1M4A5B6C7D" &&
				string(c.MASClientSecret) == clientSecret && c.MASClientSecretSource == "file "+cs && len(c.Warnings) == 0
		}},
		{name: "secret from the environment",
			args: []string{"--mas", "https://auth.example.org", "--mas-client-id", "abc", "r.csv"}, env: map[string]string{"PROVISION_MAS_CLIENT_SECRET": " " + clientSecret + "\n"},
			check: func(c *Config) bool {
				return string(c.MASClientSecret) == clientSecret && c.MASClientSecretSource == "PROVISION_MAS_CLIENT_SECRET"
			}},
		{name: "a world-readable secret file warns", args: []string{"--mas", "https://auth.example.org", "--mas-client-id", "abc", "--mas-client-secret-file", open, "r.csv"},
			check: func(c *Config) bool {
				return len(c.Warnings) == 1 && strings.Contains(c.Warnings[0], "chmod 600 "+open)
			}},
		{name: "the shared secret is dropped, with a warning", args: with("--shared-secret-file", secret),
			check: func(c *Config) bool {
				return c.Mode() == ModeMAS && c.SharedSecret == nil && len(c.Warnings) == 1 &&
					c.Warnings[0] == "the registration shared secret (file "+secret+") is not used: with --mas, accounts are created through MAS"
			}},
		{name: "an admin token is kept for Synapse's admin API", args: with("--admin-token-file", token),
			check: func(c *Config) bool { return c.Mode() == ModeMAS && string(c.AdminToken) == "syt_admin" }},
		{name: "sync flags are allowed", args: with("--update", "--deactivate-missing", "--erase", "--reset-passwords", "--leave-dropped-rooms"),
			check: func(c *Config) bool {
				return c.Update && c.DeactivateMissing && c.Erase && c.ResetPasswords && c.LeaveDroppedRooms
			}},
		{name: "plain http to this machine", args: []string{"--mas", "http://127.0.0.1:8080", "--mas-client-id", "abc", "--mas-client-secret-file", cs, "r.csv"},
			check: func(c *Config) bool { return c.MAS == "http://127.0.0.1:8080" }},

		{name: "plain http elsewhere", args: []string{"--mas", "http://auth.example.org", "--mas-client-id", "abc", "--mas-client-secret-file", cs, "r.csv"},
			want: []string{"refusing plain http:// to auth.example.org: the MAS client secret and generated passwords would cross the network unencrypted", "--allow-insecure-http"}},
		{name: "not a URL", args: []string{"--mas", "auth.example.org", "--mas-client-id", "abc", "--mas-client-secret-file", cs, "r.csv"},
			want: []string{`--mas "auth.example.org" is not an http(s) URL`, "https://auth.example.org"}},
		{name: "a password in the URL", args: []string{"--mas", "https://admin:hunter2@auth.example.org", "--mas-client-id", "abc", "--mas-client-secret-file", cs, "r.csv"},
			want: []string{"--mas: the URL holds a user name or password"}},
		{name: "no client ID", args: []string{"--mas", "https://auth.example.org", "--mas-client-secret-file", cs, "r.csv"},
			want: []string{"--mas needs a client ID", "policy.data.admin_clients"}},
		{name: "no client secret", args: []string{"--mas", "https://auth.example.org", "--mas-client-id", "abc", "r.csv"},
			want: []string{"--mas needs the client's secret", "--mas-client-secret-file", "PROVISION_MAS_CLIENT_SECRET"}},
		{name: "a client ID with a space", args: []string{"--mas", "https://auth.example.org", "--mas-client-id", "01J9 ZQ3", "--mas-client-secret-file", cs, "r.csv"},
			want: []string{"--mas-client-id holds white space"}},
		{name: "a client ID without --mas", args: []string{"--shared-secret-file", secret, "--mas-client-id", "abc", "r.csv"},
			want: []string{"--mas-client-id without --mas"}},
		{name: "a client secret without --mas", args: []string{"--shared-secret-file", secret, "r.csv"}, env: map[string]string{"PROVISION_MAS_CLIENT_SECRET": clientSecret},
			want: []string{"a MAS client secret (PROVISION_MAS_CLIENT_SECRET) without --mas", "add --mas URL"}},
		{name: "a blank client secret", args: []string{"--mas", "https://auth.example.org", "--mas-client-id", "abc", "r.csv"}, env: map[string]string{"PROVISION_MAS_CLIENT_SECRET": " "},
			want: []string{"PROVISION_MAS_CLIENT_SECRET is blank"}},
		{name: "nothing at all", args: []string{"r.csv"},
			want: []string{"no registration shared secret, admin token or MAS client configured", "--shared-secret-file", "--admin-token-file", "--mas URL"}},
	})
	if _, err := os.Stat("/dev/zero"); err == nil {
		_, err := load(t, []string{"--mas", "https://auth.example.org", "--mas-client-id", "abc", "--mas-client-secret-file", "/dev/zero", "r.csv"}, nil)
		userError(t, err, "MAS client secret: /dev/zero is larger than 64 KiB")
	}
	for _, a := range [][]string{{"--mas", "https://admin:hunter2@auth.example.org"}} {
		_, err := load(t, append(a, "--mas-client-id", "abc", "--mas-client-secret-file", cs, "r.csv"), nil)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("a password in the --mas URL is shown: %v", err)
		}
	}
}

func TestMode(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		c    Config
		want Mode
	}{
		{Config{SharedSecret: Secret("s")}, ModeSharedSecret},
		{Config{SharedSecret: Secret("s"), AdminToken: Secret("t")}, ModeAdminToken},
		{Config{AdminToken: Secret("t"), MAS: "https://auth.example.org"}, ModeMAS},
		{Config{}, 0},
	} {
		if got := tt.c.Mode(); got != tt.want {
			t.Errorf("Mode() = %v, want %v", got, tt.want)
		}
	}
}

func TestSSOProvider(t *testing.T) {
	secret := writeFile(t, t.TempDir(), "secret", "s3cret\n", 0o600)
	runSettings(t, []settingsCase{
		{name: "flag", args: []string{"--shared-secret-file", secret, "--sso-provider", " oidc-keycloak ", "r.csv"},
			check: func(c *Config) bool { return c.SSOProvider == "oidc-keycloak" }},
		{name: "a MAS provider's name", args: []string{"--shared-secret-file", secret, "r.csv"}, env: map[string]string{"PROVISION_SSO_PROVIDER": "Google Workspace"},
			check: func(c *Config) bool { return c.SSOProvider == "Google Workspace" }},
		{name: "a control character", args: []string{"--shared-secret-file", secret, "--sso-provider", "oidc\x1b[2J", "r.csv"},
			want: []string{"--sso-provider holds a control character"}},
	})
}

func TestMinRoster(t *testing.T) {
	token := writeFile(t, t.TempDir(), "token", "syt_admin\n", 0o600)
	base := []string{"--admin-token-file", token, "--deactivate-missing"}
	with := func(extra ...string) []string { return append(append(append([]string{}, base...), extra...), "r.csv") }
	runSettings(t, []settingsCase{
		{name: "defaults", args: with(), check: func(c *Config) bool { return c.MinRoster == 1 && c.MinRosterRatio == 0.5 }},
		{name: "off", args: with("--min-roster", "0", "--min-roster-ratio", "0"), check: func(c *Config) bool { return c.MinRoster == 0 && c.MinRosterRatio == 0 }},
		{name: "from a config file", args: with(), env: map[string]string{"PROVISION_MIN_ROSTER_RATIO": "0.9"}, check: func(c *Config) bool { return c.MinRosterRatio == 0.9 }},
		{name: "negative floor", args: with("--min-roster", "-1"), want: []string{"--min-roster -1 is not valid"}},
		{name: "ratio above 1", args: with("--min-roster-ratio", "1.5"), want: []string{"--min-roster-ratio 1.5 is not valid", "between 0 and 1"}},
		{name: "ratio as a word", args: with(), env: map[string]string{"PROVISION_MIN_ROSTER_RATIO": "half"}, want: []string{`min-roster-ratio: "half" is not a valid value`}},
	})
}

func TestLeaveDroppedRooms(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", "s3cret\n", 0o600)
	token := writeFile(t, dir, "token", "syt_admin\n", 0o600)
	runSettings(t, []settingsCase{
		{name: "admin token", args: []string{"--admin-token-file", token, "--leave-dropped-rooms", "r.csv"},
			check: func(c *Config) bool { return c.LeaveDroppedRooms }},
		{name: "shared secret only", args: []string{"--shared-secret-file", secret, "--leave-dropped-rooms", "r.csv"},
			want: []string{"--leave-dropped-rooms needs the Synapse admin API or MAS", "--admin-token-file", "--mas"}},
	})
}

func TestDirectoryRoster(t *testing.T) {
	dir := t.TempDir()
	const bindPassword = "Dir-Bind-Pw-41x"
	token := writeFile(t, dir, "token", "syt_admin\n", 0o600)
	pw := writeFile(t, dir, "ldap_pw", bindPassword+"\n", 0o600)
	const people = "ldaps://ldap.example.org/ou=people,dc=example,dc=org"
	cfgURL := writeFile(t, dir, "ldap.yaml", "ldap-url: "+people+"\nldap-scope: one\nldap-filter: (objectClass=person)\n", 0o600)
	base := []string{"--admin-token-file", token}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	runSettings(t, []settingsCase{
		{name: "a URL as the roster", args: with(people + "?uid,cn?sub?(objectClass=inetOrgPerson)"),
			check: func(c *Config) bool {
				return c.IsDirectory() && c.Roster == "" && c.LDAPURL == people+"?uid,cn?sub?(objectClass=inetOrgPerson)" && c.LDAPMap == "ldap"
			}},
		{name: "capital scheme", args: with("LDAPS://ldap.example.org/dc=example,dc=org"), check: func(c *Config) bool { return c.IsDirectory() }},
		{name: "from a config file", args: with("--config", cfgURL),
			check: func(c *Config) bool {
				return c.LDAPURL == people && c.LDAPScope == "one" && c.LDAPFilter == "(objectClass=person)"
			}},
		{name: "bind with a password file", args: with("--ldap-bind-dn", "cn=provision,ou=services,dc=example,dc=org", "--ldap-password-file", pw, people),
			check: func(c *Config) bool {
				return string(c.LDAPPassword) == bindPassword && c.LDAPPasswordSource == "file "+pw && c.LDAPBindDN == "cn=provision,ou=services,dc=example,dc=org"
			}},
		{name: "bind with the environment", args: with("--ldap-bind-dn", "provision@corp.example.org", people), env: map[string]string{"PROVISION_LDAP_PASSWORD": bindPassword},
			check: func(c *Config) bool {
				return string(c.LDAPPassword) == bindPassword && c.LDAPPasswordSource == "PROVISION_LDAP_PASSWORD"
			}},
		{name: "ldap:// to this machine", args: with("ldap://127.0.0.1:3389/dc=example,dc=org"), check: func(c *Config) bool { return c.IsDirectory() }},
		{name: "ldap:// to [::1]", args: with("ldap://[::1]/dc=example,dc=org"), check: func(c *Config) bool { return c.IsDirectory() }},
		{name: "ldap:// with StartTLS", args: with("--ldap-start-tls", "ldap://ldap.example.org/dc=example,dc=org"), check: func(c *Config) bool { return c.LDAPStartTLS }},
		{name: "the base from ldap-base", args: with("--ldap-base", "ou=staff,dc=example,dc=org", "ldaps://ldap.example.org"),
			check: func(c *Config) bool { return c.LDAPBase == "ou=staff,dc=example,dc=org" }},
		{name: "scope spelled out", args: with("--ldap-scope", "SubTree", people), check: func(c *Config) bool { return c.LDAPScope == "sub" }},
		{name: "Active Directory", args: with("--ldap-map", "ad,sso_subject=objectGUID", "--sso-provider", "oidc-entra", people),
			check: func(c *Config) bool { return c.LDAPMap == "ad,sso_subject=objectGUID" }},
		{name: "a whole mapping", args: with("--ldap-map", "localpart=uid, displayname=givenName+sn, email=mail", people), check: func(c *Config) bool { return c.IsDirectory() }},
		{name: "a rooms map", args: with("--rooms-map", "rooms.yaml", "--leave-dropped-rooms", people),
			check: func(c *Config) bool { return c.RoomsMap == "rooms.yaml" && c.LeaveDroppedRooms }},
		{name: "a rooms map with a file names the managed rooms", args: with("--rooms-map", "rooms.yaml", "--leave-dropped-rooms", "team.csv"),
			check: func(c *Config) bool { return !c.IsDirectory() && c.RoomsMap == "rooms.yaml" && c.LeaveDroppedRooms }},
		{name: "the default mapping spelt out, with a file", args: with("--ldap-map", "ldap", "team.csv"),
			check: func(c *Config) bool { return !c.IsDirectory() && c.Roster == "team.csv" }},
		{name: "the environment's password is not used for a file", args: with("team.csv"), env: map[string]string{"PROVISION_LDAP_PASSWORD": bindPassword},
			check: func(c *Config) bool {
				return c.LDAPPassword == nil && len(c.Warnings) == 1 && c.Warnings[0] == "PROVISION_LDAP_PASSWORD is set but not used: the roster is a file, not a directory"
			}},

		{name: "ldap:// elsewhere", args: with("ldap://ldap.example.org/dc=example,dc=org"),
			want: []string{"refusing ldap://ldap.example.org without TLS", "use ldaps://ldap.example.org (port 636) or add --ldap-start-tls"}},
		{name: "ldaps:// with StartTLS", args: with("--ldap-start-tls", people), want: []string{"--ldap-start-tls with ldaps://: the connection is TLS already"}},
		{name: "ldapi://", args: with("ldapi://%2Fvar%2Frun%2Fslapd%2Fldapi/dc=example,dc=org"), want: []string{"ldapi:// (a Unix socket) is not supported"}},
		{name: "a password in the URL", args: with("ldaps://admin:" + bindPassword + "@ldap.example.org/dc=example,dc=org"),
			want: []string{"the directory URL holds a user name or password", "--ldap-password-file"}},
		{name: "no base DN", args: with("ldaps://ldap.example.org"), want: []string{"the directory URL has no base DN", "ldaps://ldap.example.org/ou=people,dc=example,dc=org"}},
		{name: "no host", args: with("ldaps:///dc=example,dc=org"), want: []string{"names no host"}},
		{name: "two rosters", args: with("--ldap-url", people, "team.csv"), want: []string{"two rosters given: team.csv and ldap-url"}},
		{name: "a format", args: with("--format", "csv", people), want: []string{"--format csv applies only to a roster file", "--ldap-map"}},
		{name: "CSV columns", args: with("--columns", "google", people), want: []string{"--columns applies only to a CSV roster", "--ldap-map localpart=uid"}},
		{name: "an unknown scope", args: with("--ldap-scope", "tree", people), want: []string{`unknown --ldap-scope "tree"`, "sub (everything below the base DN)"}},
		{name: "a filter without parentheses", args: with("--ldap-filter", "objectClass=person", people), want: []string{`--ldap-filter "objectClass=person" is not an LDAP filter`}},
		{name: "an unbalanced filter", args: with("--ldap-filter", "(&(objectClass=person)(mail=*)", people), want: []string{"is not an LDAP filter"}},
		{name: "a bind DN without a password", args: with("--ldap-bind-dn", "cn=provision,dc=example,dc=org", people),
			want: []string{"--ldap-bind-dn without a password", "--ldap-password-file", "PROVISION_LDAP_PASSWORD"}},
		{name: "a password without a bind DN", args: with("--ldap-password-file", pw, people),
			want: []string{"a directory password (file " + pw + ") without --ldap-bind-dn"}},
		{name: "an unknown preset", args: with("--ldap-map", "novell", people), want: []string{`--ldap-map: no preset "novell"`, "ldap or ad"}},
		{name: "a change that is not KEY=ATTRIBUTE", args: with("--ldap-map", "ad,mail", people), want: []string{`--ldap-map: "mail" is not KEY=ATTRIBUTE`}},
		{name: "a mapping without localpart", args: with("--ldap-map", "displayname=cn,email=mail", people), want: []string{"--ldap-map: the mapping has no localpart", "localpart=uid"}},
		{name: "--ldap-map with a file", args: with("--ldap-map", "ad", "team.csv"), want: []string{"--ldap-map applies only to a directory roster, and the roster is the file team.csv", "--columns"}},
		{name: "--rooms-map with a file", args: with("--rooms-map", "rooms.yaml", "team.csv"), want: []string{"--rooms-map applies only to a directory roster", "rooms column"}},
		{name: "--ldap-bind-dn with a file", args: with("--ldap-bind-dn", "cn=x,dc=example,dc=org", "team.csv"), want: []string{"--ldap-bind-dn applies only to a directory roster"}},
		{name: "--ldap-start-tls with a file", args: with("--ldap-start-tls", "team.csv"), want: []string{"--ldap-start-tls applies only to a directory roster"}},
		{name: "a password file with a file", args: with("--ldap-password-file", pw, "team.csv"), want: []string{"--ldap-password-file applies only to a directory roster"}},
		{name: "no roster at all", args: with(), want: []string{"no roster given", "ldaps://"}},
	})
	_, err := load(t, with("ldaps://admin:"+bindPassword+"@ldap.example.org/dc=example,dc=org"), nil)
	if err == nil || strings.Contains(err.Error(), bindPassword) {
		t.Errorf("a password in the directory URL is shown: %v", err)
	}
}
