package config

import (
	"strings"
	"testing"
)

// The admin-token mode's flags: defaults, and combinations that would otherwise be
// silently ignored.
func TestAdminFlags(t *testing.T) {
	dir := t.TempDir()
	token := writeFile(t, dir, "token", "syt_admin\n", 0o600)
	secret := writeFile(t, dir, "secret", "s3cret\n", 0o600)
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(*Config) bool
	}{
		{name: "defaults", args: []string{"--admin-token-file", token},
			check: func(c *Config) bool {
				return !c.Update && !c.DeactivateMissing && !c.Erase && !c.ResetPasswords && c.LogoutDevices && c.MaxDeactivate == DefaultMaxDeactivate
			}},
		{name: "every flag", args: []string{"--admin-token-file", token, "--update", "--deactivate-missing", "--erase", "--max-deactivate", "-1", "--reset-passwords", "--logout-devices=false"},
			check: func(c *Config) bool {
				return c.Update && c.DeactivateMissing && c.Erase && c.ResetPasswords && !c.LogoutDevices && c.MaxDeactivate == -1
			}},
		{name: "from the environment", args: []string{"--admin-token-file", token}, env: map[string]string{"PROVISION_UPDATE": "true", "PROVISION_MAX_DEACTIVATE": "3"},
			check: func(c *Config) bool { return c.Update && c.MaxDeactivate == 3 }},
		{name: "token from the environment", env: map[string]string{"PROVISION_ADMIN_TOKEN": "syt_env", "PROVISION_DEACTIVATE_MISSING": "1"},
			check: func(c *Config) bool { return string(c.AdminToken) == "syt_env" && c.DeactivateMissing }},
		{name: "--update with only the shared secret", args: []string{"--shared-secret-file", secret, "--update"}, wantErr: "--update needs the Synapse admin API"},
		{name: "--deactivate-missing with only the shared secret", args: []string{"--shared-secret-file", secret, "--deactivate-missing"}, wantErr: "--deactivate-missing needs the Synapse admin API"},
		{name: "--reset-passwords with only the shared secret", args: []string{"--shared-secret-file", secret, "--reset-passwords"}, wantErr: "--admin-token-file"},
		{name: "--erase alone", args: []string{"--admin-token-file", token, "--erase"}, wantErr: "--erase only applies"},
		{name: "negative limit", args: []string{"--admin-token-file", token, "--max-deactivate", "-5"}, wantErr: "--max-deactivate -5"},
		{name: "limit not a number", args: []string{"--admin-token-file", token}, env: map[string]string{"PROVISION_MAX_DEACTIVATE": "ten"}, wantErr: "max-deactivate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, append(tt.args, "roster.csv"), tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("config %+v", c)
			}
		})
	}
}
