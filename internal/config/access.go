package config

import (
	"fmt"
	"strings"
	"unicode"
)

// Mode is the account system a run creates accounts through.
type Mode int

// The modes, in the order Mode chooses them.
const (
	// ModeSharedSecret registers through /_synapse/admin/v1/register with the
	// registration shared secret (Synapse, Dendrite, Conduit): create only.
	ModeSharedSecret Mode = iota + 1
	// ModeAdminToken uses Synapse's admin API with an admin's access token: create,
	// update, deactivate, rooms.
	ModeAdminToken
	// ModeMAS uses the Matrix Authentication Service's admin API with a client's
	// credentials; Synapse's admin API (with Config.AdminToken, or MAS's token with
	// the urn:synapse:admin:* scope) joins rooms.
	ModeMAS
)

func (m Mode) String() string {
	switch m {
	case ModeSharedSecret:
		return "shared secret"
	case ModeAdminToken:
		return "admin token"
	case ModeMAS:
		return "MAS"
	}
	return "none"
}

// Mode says which account system the run uses: MAS when --mas is given, else the
// admin API when there is an admin token (it does everything the shared secret does,
// and more), else shared-secret registration. It is 0 only for a Config that failed
// Validate.
func (c *Config) Mode() Mode {
	switch {
	case c.MAS != "":
		return ModeMAS
	case c.AdminToken != nil:
		return ModeAdminToken
	case c.SharedSecret != nil:
		return ModeSharedSecret
	}
	return 0
}

// dropUnused forgets secrets the chosen setup cannot use, with a warning, so that a
// secret left in the environment neither changes the mode nor lingers in memory.
// A secret given as a file for a setting that does not apply is an error instead
// (Validate): the operator asked for it on purpose.
func (c *Config) dropUnused() {
	if c.MAS != "" && c.SharedSecret != nil {
		// A server that delegates to MAS has shared-secret registration turned off.
		c.Warnings = append(c.Warnings, fmt.Sprintf("the registration shared secret (%s) is not used: with --mas, accounts are created through MAS", c.SharedSecretSource))
		c.SharedSecret, c.SharedSecretSource = nil, ""
	}
	if !c.IsDirectory() && c.LDAPPassword != nil && c.LDAPPasswordSource == EnvLDAPPassword {
		c.Warnings = append(c.Warnings, EnvLDAPPassword+" is set but not used: the roster is a file, not a directory")
		c.LDAPPassword, c.LDAPPasswordSource = nil, ""
	}
}

// validateAccess checks that there is a way to create accounts, and that MAS's
// settings come together.
func (c *Config) validateAccess() error {
	if c.MAS == "" {
		switch {
		case c.MASClientID != "":
			return errorf("add --mas URL (MAS's base URL), or drop --mas-client-id", "--mas-client-id without --mas")
		case c.MASClientSecret != nil:
			return errorf("add --mas URL (MAS's base URL), or remove the client secret", "a MAS client secret (%s) without --mas", c.MASClientSecretSource)
		}
	} else {
		if err := checkServerURL("--mas", c.MAS, c.AllowInsecureHTTP,
			"give MAS's base URL, where /oauth2/token answers, e.g. https://auth.example.org",
			"the MAS client secret and generated passwords"); err != nil {
			return err
		}
		if c.MASClientID == "" {
			return errorf("add --mas-client-id with the ID of the client provision uses (MAS's clients: entry, listed in policy.data.admin_clients)", "--mas needs a client ID")
		}
		if strings.ContainsFunc(c.MASClientID, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			return errorf("copy the client_id from MAS's config, e.g. 01J9ZQ3N7V0XKQ2E1M4A5B6C7D", "--mas-client-id holds white space or a control character")
		}
		if c.MASClientSecret == nil {
			return errorf("put the client's client_secret in a file readable only by you and pass --mas-client-secret-file FILE, or set "+EnvMASClientSecret,
				"--mas needs the client's secret")
		}
	}
	if c.SharedSecret == nil && c.AdminToken == nil && c.MAS == "" {
		return errorf("pass --shared-secret-file FILE or --synapse-config /etc/matrix-synapse/homeserver.yaml (or set "+EnvSharedSecret+
			"); on Synapse, an admin's token with --admin-token-file FILE; on a server that delegates to MAS, --mas URL with --mas-client-id and --mas-client-secret-file",
			"no registration shared secret, admin token or MAS client configured")
	}
	return nil
}
