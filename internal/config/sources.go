package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/viper"

	"github.com/provision-matrix/provision/internal/password"
)

func (c *Config) loadSecrets(v *viper.Viper, getenv func(string) string, synapseConfigs []string) error {
	var syn *SynapseConfig
	if len(synapseConfigs) > 0 {
		var err error
		syn, err = ReadSynapseConfigs(synapseConfigs)
		if err != nil {
			return err
		}
		c.Warnings = append(c.Warnings, syn.Warnings...)
		if c.ServerName == "" {
			c.ServerName = syn.ServerName
		}
		c.Policy = syn.Policy
	}

	var err error
	c.SharedSecret, c.SharedSecretSource, err = c.secretFrom(v, getenv, fSharedSecretFile, EnvSharedSecret, "shared secret", "registration_shared_secret")
	if err != nil {
		return err
	}
	if c.SharedSecret == nil && syn != nil && syn.SharedSecret != nil {
		c.SharedSecret, c.SharedSecretSource = syn.SharedSecret, syn.SharedSecretSource
	}
	c.AdminToken, c.AdminTokenSource, err = c.secretFrom(v, getenv, fAdminTokenFile, EnvAdminToken, "admin token", "a Synapse admin's access token")
	if err != nil {
		return err
	}
	c.MASClientSecret, c.MASClientSecretSource, err = c.secretFrom(v, getenv, fMASClientSecret, EnvMASClientSecret, "MAS client secret", "the client_secret of provision's client in MAS's config")
	if err != nil {
		return err
	}
	c.LDAPPassword, c.LDAPPasswordSource, err = c.secretFrom(v, getenv, fLDAPPasswordFile, EnvLDAPPassword, "directory password", "the directory service account's password")
	if err != nil {
		return err
	}
	c.dropUnused()
	return nil
}

// secretFrom reads a secret from the file named by the flag (or its PROVISION_…_FILE
// variable), else from the environment variable env; a file wins. It returns nil when
// neither is set. Both sources get the same checks: a blank value is an error, not an
// empty secret.
func (c *Config) secretFrom(v *viper.Viper, getenv func(string) string, flag, env, what, meaning string) (Secret, string, error) {
	if file := v.GetString(flag); file != "" {
		s, warn, err := ReadSecretFile(file)
		if err != nil {
			return nil, "", errorf(fmt.Sprintf("check the path given to --%s (or %s_%s)", flag, EnvPrefix, envName(flag)), "%s: %v", what, err)
		}
		c.Warnings = append(c.Warnings, warn...)
		return s, "file " + file, nil
	}
	raw := getenv(env)
	if raw == "" {
		return nil, "", nil
	}
	s := Secret(strings.TrimSpace(raw))
	if len(s) == 0 {
		return nil, "", errorf(fmt.Sprintf("set %s to %s", env, meaning), "%s is blank", env)
	}
	return s, env, nil
}

// ReadSecretFile reads a secret from a file, trimming surrounding white space as
// Synapse does for registration_shared_secret_path. It refuses an empty file and warns
// when other local users can read the file.
func ReadSecretFile(path string) (Secret, []string, error) {
	b, st, err := readCapped(path, maxSecretFile)
	if err != nil {
		var tl *tooLargeError
		if errors.As(err, &tl) {
			return nil, nil, fmt.Errorf("%w: that is not a secret file", err)
		}
		return nil, nil, err
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%s is empty", path)
	}
	if bytes.IndexByte(b, 0) >= 0 || bytes.ContainsAny(b, "\n\r") {
		return nil, nil, fmt.Errorf("%s holds more than one line: it should hold only the secret", path)
	}
	return Secret(b), exposureWarnings(path, st), nil
}

func exposureWarnings(path string, st os.FileInfo) []string {
	var w []string
	abs, _ := filepath.Abs(path)
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	if strings.HasPrefix(abs, "/nix/store/") {
		w = append(w, fmt.Sprintf("%s is in the Nix store, which every local user can read: deploy the secret outside it (sops-nix, agenix, or a file you copy to /run/secrets) and point provision at that copy", path))
	} else if st.Mode().Perm()&0o077 != 0 {
		w = append(w, fmt.Sprintf("%s can be read by other users (mode %04o): run chmod 600 %s", path, st.Mode().Perm(), path))
	}
	return w
}

// SynapseConfig is what provision takes from Synapse's homeserver.yaml (or the
// fragments a deployment such as NixOS splits it into).
type SynapseConfig struct {
	ServerName         string
	SharedSecret       Secret
	SharedSecretSource string
	Policy             password.Policy
	Warnings           []string
}

// ReadSynapseConfigs reads one or more Synapse config files the way
// register_new_matrix_user -c does: each file's top-level keys replace those of the
// files before it.
func ReadSynapseConfigs(paths []string) (*SynapseConfig, error) {
	merged := map[string]any{}
	from := map[string]string{}
	var warnings []string
	for _, p := range paths {
		b, st, err := readCapped(p, maxConfigFile)
		if err != nil {
			var tl *tooLargeError
			if errors.As(err, &tl) {
				return nil, errorf("point --synapse-config at homeserver.yaml or a fragment of it", "Synapse config %v: not a Synapse config", err)
			}
			return nil, errorf("check the path given to --synapse-config", "Synapse config: %v", err)
		}
		doc, err := parseYAMLMapping(b)
		if err != nil {
			return nil, errorf("fix the YAML, or point --synapse-config at the right file", "Synapse config %s: %v", p, err)
		}
		for k, val := range doc {
			merged[k] = val
			from[k] = p
		}
		if _, ok := doc["registration_shared_secret"]; ok && st != nil {
			for _, w := range exposureWarnings(p, st) {
				warnings = append(warnings, w+" (it holds registration_shared_secret)")
			}
		}
	}

	sc := &SynapseConfig{Warnings: warnings}
	if s, ok := merged["server_name"].(string); ok {
		sc.ServerName = s
	}
	inline, hasInline := merged["registration_shared_secret"]
	pathVal, hasPath := merged["registration_shared_secret_path"]
	if hasInline && inline != nil && hasPath && pathVal != nil {
		return nil, errorf("remove one of them, as Synapse itself refuses such a config",
			"Synapse config sets both registration_shared_secret (%s) and registration_shared_secret_path (%s)", from["registration_shared_secret"], from["registration_shared_secret_path"])
	}
	switch {
	case hasInline && inline != nil:
		s := strings.TrimSpace(fmt.Sprint(inline))
		if s == "" {
			return nil, errorf("set it to the secret, or use registration_shared_secret_path", "registration_shared_secret in %s is empty", from["registration_shared_secret"])
		}
		sc.SharedSecret, sc.SharedSecretSource = Secret(s), "registration_shared_secret in "+from["registration_shared_secret"]
	case hasPath && pathVal != nil:
		p := fmt.Sprint(pathVal)
		s, warn, err := ReadSecretFile(p)
		if err != nil {
			return nil, errorf("registration_shared_secret_path must name a readable, non-empty file",
				"registration_shared_secret_path in %s: %v", from["registration_shared_secret_path"], err)
		}
		sc.SharedSecret, sc.SharedSecretSource = s, "file "+p+" (registration_shared_secret_path)"
		sc.Warnings = append(sc.Warnings, warn...)
	}

	if pc, ok := merged["password_config"].(map[string]any); ok {
		if pol, ok := pc["policy"].(map[string]any); ok && truthy(pol["enabled"]) {
			sc.Policy = password.Policy{
				MinLength:        intOf(pol["minimum_length"]),
				RequireDigit:     truthy(pol["require_digit"]),
				RequireSymbol:    truthy(pol["require_symbol"]),
				RequireLowercase: truthy(pol["require_lowercase"]),
				RequireUppercase: truthy(pol["require_uppercase"]),
			}
		}
	}
	return sc, nil
}

func truthy(v any) bool {
	b, ok := v.(bool)
	return ok && b
}

func intOf(v any) int {
	switch x := v.(type) {
	case int:
		return x
	case int64:
		return int(x)
	case float64:
		return int(x)
	}
	return 0
}
