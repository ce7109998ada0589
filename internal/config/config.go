// Package config turns flags, environment variables and a YAML config file into one
// validated Config. It is the only package that knows about viper.
//
// Precedence, highest first: command-line flags, PROVISION_<NAME> environment variables,
// the --config file, defaults. Secrets never come from a flag: they are read from files
// (--shared-secret-file, --admin-token-file, --synapse-config, --mas-client-secret-file,
// --ldap-password-file) or from the environment (PROVISION_SHARED_SECRET,
// PROVISION_ADMIN_TOKEN, PROVISION_MAS_CLIENT_SECRET, PROVISION_LDAP_PASSWORD).
//
// Which account system a run uses follows from what is configured (see [Config.Mode]):
// --mas wins, then an admin token, then the shared secret. The package imports none of
// the packages that talk to those systems: the CLI builds their configuration from the
// plain values here.
//
// Errors are *Error values: a message that says what is wrong and a hint that says what
// to do, kept apart so that the advice is printed once.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/provision-matrix/provision/internal/password"
	"github.com/provision-matrix/provision/internal/suggest"
)

// EnvPrefix is the prefix of every environment variable provision reads.
const EnvPrefix = "PROVISION"

// Config is everything a run needs, validated.
type Config struct {
	ConfigFile string // --config, "" = none
	noRoster   bool   // loaded for a command that reads no roster
	// Roster is the roster file, or "-" for stdin; "" when the roster is a directory
	// (see IsDirectory).
	Roster string
	Format string // "csv", "yaml" or "" (by extension); always "" for a directory
	// Columns reads an export from another system: google, entra, okta or a
	// mapping "localpart=uid,..." (parsed by roster.ParseColumns); "" = provision's columns.
	Columns string

	Homeserver        string
	ServerName        string
	CAFile            string
	AllowInsecureHTTP bool

	// SharedSecret is the registration shared secret, or nil when none was configured.
	SharedSecret Secret
	// SharedSecretSource says where it came from, for messages ("file /etc/x", "PROVISION_SHARED_SECRET").
	SharedSecretSource string
	// AdminToken is a Synapse admin's access token, or nil.
	AdminToken       Secret
	AdminTokenSource string
	// Policy is the password policy found in --synapse-config files (zero when none).
	Policy password.Policy

	// MAS is the base URL of the Matrix Authentication Service (where /oauth2/token and
	// /api/admin/v1/ answer), "" when the server does not delegate to MAS. With it,
	// accounts are created through MAS: the shared secret is dropped (with a warning),
	// and an admin token, if any, serves only Synapse's admin API (joining rooms).
	MAS                   string
	MASClientID           string
	MASClientSecret       Secret
	MASClientSecretSource string

	// SSOProvider is the identity provider of roster users who have an sso_subject and
	// no sso_provider (Synapse's idp_id such as "oidc-keycloak", or MAS's provider ID
	// or name); "" = such users are an error.
	SSOProvider string

	// The directory roster (see IsDirectory). LDAPURL is an RFC 4516 URL; LDAPBase,
	// LDAPFilter and LDAPScope ("sub", "one", "base" or "" for the URL's) replace the
	// URL's parts when set. The CLI turns them into directory.Config.
	LDAPURL, LDAPBase, LDAPFilter, LDAPScope string
	LDAPBindDN                               string // "" binds anonymously
	LDAPPassword                             Secret
	LDAPPasswordSource                       string
	LDAPStartTLS                             bool
	LDAPMap                                  string // "ldap", "ad" or a mapping; see --ldap-map
	// RoomsMap is a YAML file of directory group → rooms; "" = no rooms from groups.
	RoomsMap string
	// LeaveDroppedRooms makes people leave the rooms that a group (or the roster's
	// rooms column) gave them once they are no longer given them.
	LeaveDroppedRooms bool

	Recipients     []string
	RecipientsFile string
	Credentials    string
	Plaintext      bool
	HandoffDir     string
	OperatorCopy   bool
	Force          bool

	Report string
	// Journal is the journal file given with --journal, "" = the CLI's default: one
	// journal per server (by server name) under StateDir.
	Journal string
	// StateDir is where provision keeps what outlives a run (journals, the last
	// roster size); always an absolute path.
	StateDir string
	Fresh    bool

	Concurrency    int     // requests in flight at once; with RateAuto, at most
	Rate           float64 // registrations started per second; 0 = no limit
	RateAuto       bool    // --rate auto: find the server's capacity while running (Rate is 0)
	PasswordLength int
	DryRun         bool
	Timeout        time.Duration // whole run; 0 = none
	RequestTimeout time.Duration
	// RetryBudget is how long one request is retried through transient faults (5xx,
	// resets, timeouts, 429) before it counts as failed.
	RetryBudget time.Duration
	// MaxRetryAfter is the longest Retry-After (or retry_after_ms) waited out; a
	// longer one fails that phase with a message.
	MaxRetryAfter time.Duration

	// Admin-token and MAS modes only: what a run may change beyond creating accounts.
	Update            bool // change existing accounts to match the roster
	DeactivateMissing bool // deactivate accounts provision created that left the roster
	Erase             bool // erase them too (GDPR erasure for future readers)
	MaxDeactivate     int  // abort when more would be deactivated; -1 = no limit
	ResetPasswords    bool // give existing accounts new passwords
	LogoutDevices     bool // with ResetPasswords: log out their devices (Synapse's default)
	// MinRoster refuses every deactivation when the roster has fewer users; 0 = no
	// floor. MinRosterRatio refuses them when the roster shrank below this fraction of
	// the last run's count (kept in StateDir); 0 = no check. A directory search that
	// came back empty or cut short must never look like "everyone left".
	MinRoster      int
	MinRosterRatio float64

	LogLevel  string
	LogFormat string
	Quiet     bool
	// MetricsFile receives Prometheus metrics of the run (node_exporter's textfile
	// collector); "" = none.
	MetricsFile string

	// Warnings are things the operator should fix but that do not stop the run
	// (a world-readable secret file, for example).
	Warnings []string
}

// Secret holds a secret value. It prints as "[REDACTED]" so that a stray %v or a
// structured log of a Config can never reveal it.
type Secret []byte

// Secrets are every secret of the configuration that is set: the run blanks each of
// them out of everything it prints or writes.
func (c *Config) Secrets() []Secret {
	var out []Secret
	for _, s := range []Secret{c.SharedSecret, c.AdminToken, c.MASClientSecret, c.LDAPPassword} {
		if len(s) > 0 {
			out = append(out, s)
		}
	}
	return out
}

func (s Secret) String() string   { return "[REDACTED]" }
func (s Secret) GoString() string { return "config.Secret([REDACTED])" }

// Error is a configuration error: the run must not start (exit code 2).
type Error struct {
	Msg  string
	Hint string
}

func (e *Error) Error() string {
	if e.Hint == "" {
		return e.Msg
	}
	return e.Msg + "\n  hint: " + e.Hint
}

func errorf(hint, format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// flag names, shared by RegisterFlags and Load.
const (
	fConfig            = "config"
	fFormat            = "format"
	fColumns           = "columns"
	fMetricsFile       = "metrics-file"
	fHomeserver        = "homeserver"
	fServerName        = "server-name"
	fCAFile            = "ca-file"
	fAllowInsecureHTTP = "allow-insecure-http"
	fSharedSecretFile  = "shared-secret-file"
	fAdminTokenFile    = "admin-token-file"
	fSynapseConfig     = "synapse-config"
	fRecipient         = "recipient"
	fRecipientsFile    = "recipients-file"
	fCredentials       = "credentials"
	fPlaintext         = "plaintext-credentials"
	fHandoffDir        = "handoff-dir"
	fOperatorCopy      = "operator-copy"
	fForce             = "force"
	fReport            = "report"
	fJournal           = "journal"
	fFresh             = "fresh"
	fConcurrency       = "concurrency"
	fRate              = "rate"
	fPasswordLength    = "password-length"
	fDryRun            = "dry-run"
	fTimeout           = "timeout"
	fRequestTimeout    = "request-timeout"
	fLogLevel          = "log-level"
	fLogFormat         = "log-format"
	fQuiet             = "quiet"
	fUpdate            = "update"
	fDeactivateMissing = "deactivate-missing"
	fErase             = "erase"
	fMaxDeactivate     = "max-deactivate"
	fResetPasswords    = "reset-passwords"
	fLogoutDevices     = "logout-devices"
	fMinRoster         = "min-roster"
	fMinRosterRatio    = "min-roster-ratio"
	fStateDir          = "state-dir"
	fRetryBudget       = "retry-budget"
	fMaxRetryAfter     = "max-retry-after"
	fMAS               = "mas"
	fMASClientID       = "mas-client-id"
	fMASClientSecret   = "mas-client-secret-file"
	fSSOProvider       = "sso-provider"
	fLDAPURL           = "ldap-url"
	fLDAPBase          = "ldap-base"
	fLDAPFilter        = "ldap-filter"
	fLDAPScope         = "ldap-scope"
	fLDAPBindDN        = "ldap-bind-dn"
	fLDAPPasswordFile  = "ldap-password-file"
	fLDAPStartTLS      = "ldap-start-tls"
	fLDAPMap           = "ldap-map"
	fRoomsMap          = "rooms-map"
	fLeaveDropped      = "leave-dropped-rooms"
)

// Environment variables that hold secrets (the others are PROVISION_<FLAG NAME>).
const (
	EnvSharedSecret    = EnvPrefix + "_SHARED_SECRET"
	EnvAdminToken      = EnvPrefix + "_ADMIN_TOKEN"
	EnvMASClientSecret = EnvPrefix + "_MAS_CLIENT_SECRET"
	EnvLDAPPassword    = EnvPrefix + "_LDAP_PASSWORD"
)

// Defaults.
const (
	DefaultHomeserver     = "http://localhost:8008"
	DefaultConcurrency    = 4
	DefaultRate           = 10
	DefaultPasswordLength = 24
	DefaultRequestTimeout = 60 * time.Second
	// DefaultMaxDeactivate is the most accounts one run deactivates unless told
	// otherwise. A nightly sync's real churn is a handful of leavers; a roster that
	// came out truncated or empty (a failed HR export, the wrong file) would remove
	// dozens or everyone. Ten lets ordinary days through and stops that disaster
	// before it starts; a large offboarding passes --max-deactivate N once.
	DefaultMaxDeactivate = 10
	// DefaultRetryBudget is how long one request keeps being retried through
	// transient faults: long enough for a homeserver restart or a proxy's hiccup,
	// short enough that a server that is really down stops the run within minutes.
	DefaultRetryBudget = 5 * time.Minute
	// DefaultMaxRetryAfter is the longest rate-limit pause waited out; above it the
	// server is asking for something a batch run should not silently do.
	DefaultMaxRetryAfter = 10 * time.Minute
	// DefaultMinRoster: a roster with no one in it never deactivates anyone.
	DefaultMinRoster = 1
	// DefaultMinRosterRatio: a roster that lost more than half of its people since the
	// last run is more likely a broken export or search than a mass departure.
	DefaultMinRosterRatio = 0.5
	// DefaultLDAPMap is the attribute mapping of OpenLDAP's inetOrgPerson.
	DefaultLDAPMap = "ldap"
)

// DefaultAutoConcurrency bounds the requests in flight with --rate auto when
// --concurrency is not given: the run finds how many the server takes, up to this.
const DefaultAutoConcurrency = 256

// RegisterFlags defines every flag on fs. The same names are config-file keys and,
// upper-cased with '-' as '_', PROVISION_ environment variables.
func RegisterFlags(fs *pflag.FlagSet) {
	fs.String(fConfig, "", "read settings from this YAML `FILE` (keys are the flag names)")
	fs.String(fFormat, "", "roster format: csv or yaml (default: from the file name; needed for stdin)")
	fs.String(fColumns, "", "read a CSV export as it is: google, entra, okta, or a `MAPPING` such as localpart=uid,displayname=cn,email=mail")

	fs.String(fHomeserver, DefaultHomeserver, "base `URL` of the homeserver's client API")
	fs.String(fServerName, "", "the server_name in user IDs (default: learned from the server's answers or --synapse-config)")
	fs.String(fCAFile, "", "trust this PEM `FILE` of CA certificates (a private CA) for the homeserver, MAS and the directory, in addition to the system's")
	fs.Bool(fAllowInsecureHTTP, false, "allow plain http:// to a host that is not this machine (passwords then cross the network unencrypted)")

	fs.String(fSharedSecretFile, "", "read the registration shared secret from `FILE` (or set PROVISION_SHARED_SECRET)")
	fs.String(fAdminTokenFile, "", "read a Synapse admin access token from `FILE` (or set PROVISION_ADMIN_TOKEN)")
	fs.StringArray(fSynapseConfig, nil, "read registration_shared_secret(_path), server_name and password policy from this Synapse config `FILE` (repeatable, later files win)")

	fs.String(fMAS, "", "create accounts through the Matrix Authentication Service at this base `URL` (for servers that delegate login to MAS); needs --mas-client-id and its secret")
	fs.String(fMASClientID, "", "the `ID` of the MAS client provision uses (a clients: entry of MAS's config, listed under policy.data.admin_clients)")
	fs.String(fMASClientSecret, "", "read that MAS client's secret from `FILE` (or set PROVISION_MAS_CLIENT_SECRET)")
	fs.String(fSSOProvider, "", "bind roster users who have an sso_subject but no sso_provider to this identity provider `ID` (Synapse's idp_id, e.g. oidc-keycloak, or the MAS provider's ID or name)")

	fs.StringArray(fRecipient, nil, "encrypt the credentials to this age (age1...) or SSH public `KEY` (repeatable)")
	fs.String(fRecipientsFile, "", "encrypt the credentials to every public key in `FILE` (one per line, # comments)")
	fs.String(fCredentials, "", "write the encrypted credentials of created users to `FILE` (default: credentials-TIME.age)")
	fs.Bool(fPlaintext, false, "write the credentials file unencrypted (mode 0600) when you have no age or SSH key")
	fs.String(fHandoffDir, "handoff", "write each user's own encrypted welcome file (roster column recipient) into `DIR`")
	fs.Bool(fOperatorCopy, false, "also put passwords of users with their own recipient into the operator's credentials file")
	fs.Bool(fForce, false, "overwrite an existing credentials or welcome file")

	fs.String(fReport, "-", "write the results report to `FILE` (.csv or .json; - for standard output)")
	fs.String(fStateDir, "", "keep journals and the last roster size in `DIR` (default: $XDG_STATE_HOME/provision, else ~/.local/state/provision; /var/lib/provision for root without HOME)")
	fs.String(fJournal, "", "keep the resumable journal in `FILE` instead (default: one journal per server in --state-dir)")
	fs.Bool(fFresh, false, "start a new journal instead of resuming the old one (the old one is kept with a .old suffix)")

	fs.Int(fConcurrency, DefaultConcurrency, "registrations in flight at once (with --rate auto: at most, default 256)")
	fs.String(fRate, strconv.Itoa(DefaultRate), "start at most `N` registrations per second (0 = no limit), or auto: find the server's capacity while running")
	fs.Int(fPasswordLength, DefaultPasswordLength, "length of generated passwords (at most 72: bcrypt ignores the rest)")
	fs.Bool(fDryRun, false, "validate the roster and check who exists already; change nothing")
	fs.Duration(fTimeout, 0, "give up the whole run after this long, e.g. 30m (0 = never)")
	fs.Duration(fRequestTimeout, DefaultRequestTimeout, "give up one attempt at a request after this long")
	fs.Duration(fRetryBudget, DefaultRetryBudget, "keep retrying one request through server errors, dropped connections, timeouts and rate limits for this long")
	fs.Duration(fMaxRetryAfter, DefaultMaxRetryAfter, "wait out a rate limit (Retry-After) up to this long; a longer one stops the run with a message")

	fs.Bool(fUpdate, false, "admin token or MAS only: change existing accounts whose display name, email or admin flag differ from the roster, and join them to rooms the roster added")
	fs.Bool(fDeactivateMissing, false, "admin token or MAS only: deactivate accounts that provision created and that are no longer in the roster")
	fs.Bool(fErase, false, "with --deactivate-missing: also erase their profiles and messages (GDPR erasure)")
	fs.Int(fMaxDeactivate, DefaultMaxDeactivate, "abort the whole run, before changing anything, when more than `N` accounts would be deactivated (-1 = no limit)")
	fs.Int(fMinRoster, DefaultMinRoster, "deactivate no one when the roster has fewer than `N` users (0 = no floor)")
	fs.Float64(fMinRosterRatio, DefaultMinRosterRatio, "deactivate no one when the roster shrank below this `FRACTION` of the last run's (0 = no check): a failed export or search must not look like everyone left")
	fs.Bool(fResetPasswords, false, "admin token or MAS only: give every existing account of the roster a new password, handed off like new ones")
	fs.Bool(fLogoutDevices, true, "with --reset-passwords: log out every device of those accounts (--logout-devices=false keeps them)")
	fs.Bool(fLeaveDropped, false, "admin token or MAS only: make people leave the rooms their group (or the roster's rooms column) no longer gives them; other rooms are never touched")

	fs.String(fLDAPURL, "", "read the roster from this directory, an LDAP `URL` such as ldaps://ldap.example.org/ou=people,dc=example,dc=org (also accepted in place of the roster file)")
	fs.String(fLDAPBase, "", "directory roster: search below this base `DN` instead of the URL's")
	fs.String(fLDAPFilter, "", "directory roster: select people with this LDAP `FILTER` (default: the URL's, else the mapping's, e.g. (objectClass=inetOrgPerson))")
	fs.String(fLDAPScope, "", "directory roster: search `SCOPE` sub (everything below the base), one (the level below it) or base (default: the URL's, else sub)")
	fs.String(fLDAPBindDN, "", "directory roster: bind as this read-only service account `DN` (default: anonymous); its password comes from --ldap-password-file or PROVISION_LDAP_PASSWORD")
	fs.String(fLDAPPasswordFile, "", "read the directory service account's password from `FILE` (or set PROVISION_LDAP_PASSWORD)")
	fs.Bool(fLDAPStartTLS, false, "directory roster: upgrade an ldap:// connection with StartTLS before binding (needed for ldap:// to another machine)")
	fs.String(fLDAPMap, DefaultLDAPMap, "directory roster: how entries become users: ldap (uid, displayName or cn, mail), ad (sAMAccountName; disabled accounts left out), or a `MAPPING` such as localpart=uid,displayname=cn,email=mail")
	fs.String(fRoomsMap, "", "directory roster: join members of directory groups to rooms, as this YAML `FILE` maps group DN or cn to room IDs or aliases")

	fs.String(fLogLevel, "info", "log level: debug, info, warn or error")
	fs.String(fLogFormat, "text", "format of what provision says on standard error: text, or json for one JSON object a line (no progress bar; the summary is a \"summary\" record)")
	fs.BoolP(fQuiet, "q", false, "print only errors (for cron)")
	fs.String(fMetricsFile, "", "write Prometheus metrics of the run to `FILE` (for node_exporter's textfile collector, e.g. /var/lib/node_exporter/provision.prom)")
}

// Load reads the config file named by --config (if any), the environment and the flags
// in fs, and returns a validated Config. args are the positional arguments.
func Load(fs *pflag.FlagSet, args []string, getenv func(string) string) (*Config, error) {
	return loadConfig(fs, args, getenv, true)
}

// LoadWithoutRoster is Load for a command that reads no roster (`provision
// recover`): the same flags, environment and config file, the same checks of
// everything else.
func LoadWithoutRoster(fs *pflag.FlagSet, getenv func(string) string) (*Config, error) {
	return loadConfig(fs, nil, getenv, false)
}

func loadConfig(fs *pflag.FlagSet, args []string, getenv func(string) string, needRoster bool) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(fs); err != nil {
		return nil, err
	}
	known := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) { known[f.Name] = true })

	configFile := v.GetString(fConfig)
	if file := configFile; file != "" {
		if err := readConfigFile(v, file, known); err != nil {
			return nil, err
		}
	}

	c := &Config{
		ConfigFile:        configFile,
		Format:            strings.ToLower(v.GetString(fFormat)),
		Columns:           strings.TrimSpace(v.GetString(fColumns)),
		MetricsFile:       v.GetString(fMetricsFile),
		Homeserver:        strings.TrimRight(v.GetString(fHomeserver), "/"),
		ServerName:        v.GetString(fServerName),
		CAFile:            v.GetString(fCAFile),
		AllowInsecureHTTP: v.GetBool(fAllowInsecureHTTP),
		Recipients:        stringList(v, fs, fRecipient),
		RecipientsFile:    v.GetString(fRecipientsFile),
		Credentials:       v.GetString(fCredentials),
		Plaintext:         v.GetBool(fPlaintext),
		HandoffDir:        v.GetString(fHandoffDir),
		OperatorCopy:      v.GetBool(fOperatorCopy),
		Force:             v.GetBool(fForce),
		Report:            v.GetString(fReport),
		Journal:           v.GetString(fJournal),
		StateDir:          v.GetString(fStateDir),
		Fresh:             v.GetBool(fFresh),
		Concurrency:       v.GetInt(fConcurrency),
		Rate:              v.GetFloat64(fRate),
		PasswordLength:    v.GetInt(fPasswordLength),
		DryRun:            v.GetBool(fDryRun),
		Timeout:           v.GetDuration(fTimeout),
		RequestTimeout:    v.GetDuration(fRequestTimeout),
		RetryBudget:       v.GetDuration(fRetryBudget),
		MaxRetryAfter:     v.GetDuration(fMaxRetryAfter),
		MinRoster:         v.GetInt(fMinRoster),
		MinRosterRatio:    v.GetFloat64(fMinRosterRatio),
		MAS:               strings.TrimRight(strings.TrimSpace(v.GetString(fMAS)), "/"),
		MASClientID:       strings.TrimSpace(v.GetString(fMASClientID)),
		SSOProvider:       strings.TrimSpace(v.GetString(fSSOProvider)),
		LDAPURL:           strings.TrimSpace(v.GetString(fLDAPURL)),
		LDAPBase:          strings.TrimSpace(v.GetString(fLDAPBase)),
		LDAPFilter:        strings.TrimSpace(v.GetString(fLDAPFilter)),
		LDAPScope:         strings.ToLower(strings.TrimSpace(v.GetString(fLDAPScope))),
		LDAPBindDN:        strings.TrimSpace(v.GetString(fLDAPBindDN)),
		LDAPStartTLS:      v.GetBool(fLDAPStartTLS),
		LDAPMap:           strings.TrimSpace(v.GetString(fLDAPMap)),
		RoomsMap:          v.GetString(fRoomsMap),
		LeaveDroppedRooms: v.GetBool(fLeaveDropped),
		LogLevel:          strings.ToLower(v.GetString(fLogLevel)),
		LogFormat:         strings.ToLower(v.GetString(fLogFormat)),
		Quiet:             v.GetBool(fQuiet),
		Update:            v.GetBool(fUpdate),
		DeactivateMissing: v.GetBool(fDeactivateMissing),
		Erase:             v.GetBool(fErase),
		MaxDeactivate:     v.GetInt(fMaxDeactivate),
		ResetPasswords:    v.GetBool(fResetPasswords),
		LogoutDevices:     v.GetBool(fLogoutDevices),
	}
	if isAuto(v.GetString(fRate)) {
		c.RateAuto, c.Rate = true, 0
		if !v.IsSet(fConcurrency) {
			c.Concurrency = DefaultAutoConcurrency
		}
	}
	// viper's GetInt/GetFloat64 return 0 for a value they cannot parse; re-parse the
	// raw strings so that PROVISION_CONCURRENCY=abc is an error, not a silent 0.
	for _, k := range []string{fConcurrency, fRate, fPasswordLength, fTimeout, fRequestTimeout, fMaxDeactivate,
		fRetryBudget, fMaxRetryAfter, fMinRoster, fMinRosterRatio} {
		if err := checkNumber(v, k); err != nil {
			return nil, err
		}
	}

	c.noRoster = !needRoster
	if needRoster {
		if err := c.setRoster(args); err != nil {
			return nil, err
		}
	}
	if err := c.setStateDir(getenv, os.Geteuid()); err != nil {
		return nil, err
	}
	// A mapping other than the default must be used: --ldap-map ad with a roster file
	// would otherwise be ignored without a word.
	if v.IsSet(fLDAPMap) && v.GetString(fLDAPMap) != DefaultLDAPMap && !c.IsDirectory() {
		return nil, errorf("drop --ldap-map, or give a directory (ldaps://...) as the roster; a CSV export is mapped with --columns",
			"--ldap-map applies only to a directory roster, and the roster is the file %s", c.Roster)
	}

	if err := c.loadSecrets(v, getenv, stringList(v, fs, fSynapseConfig)); err != nil {
		return nil, err
	}
	if c.Credentials == "" {
		c.Credentials = "credentials-" + time.Now().UTC().Format("20060102T150405Z") + ".age"
		if c.Plaintext {
			c.Credentials = strings.TrimSuffix(c.Credentials, ".age") + ".csv"
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// stringList reads a repeatable flag. A flag given on the command line wins; otherwise
// the environment (comma- or space-separated) or config file (a YAML list) is used.
func stringList(v *viper.Viper, fs *pflag.FlagSet, name string) []string {
	if f := fs.Lookup(name); f != nil && f.Changed {
		vals, _ := fs.GetStringArray(name)
		return vals
	}
	raw := v.Get(name)
	switch x := raw.(type) {
	case string:
		if x == "" {
			return nil
		}
		if name == fRecipient {
			// Keys contain spaces (ssh-ed25519 AAAA... comment): only commas and newlines separate them.
			return splitNonEmpty(x, ",\n")
		}
		return splitNonEmpty(x, ", \n")
	case []string:
		return x
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

func splitNonEmpty(s, seps string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func checkNumber(v *viper.Viper, key string) error {
	raw := v.Get(key)
	s, ok := raw.(string)
	if !ok {
		return nil
	}
	var err error
	switch key {
	case fTimeout, fRequestTimeout, fRetryBudget, fMaxRetryAfter:
		_, err = time.ParseDuration(s)
	case fRate:
		if !isAuto(s) {
			_, err = strconv.ParseFloat(s, 64)
		}
	case fMinRosterRatio:
		_, err = strconv.ParseFloat(s, 64)
	default:
		_, err = strconv.Atoi(s)
	}
	if err != nil {
		return errorf(fmt.Sprintf("check --%s, PROVISION_%s and the config file", key, envName(key)), "%s: %q is not a valid value", key, s)
	}
	return nil
}

// isAuto reports whether a --rate value asks for the adaptive rate.
func isAuto(rate string) bool { return strings.EqualFold(strings.TrimSpace(rate), "auto") }

func envName(key string) string { return strings.ToUpper(strings.ReplaceAll(key, "-", "_")) }

// readConfigFile reads --config through a size cap and its own YAML check, then hands
// the settings to viper: viper would read any size, and its parse errors quote the
// file, which may be a secret file named by mistake.
func readConfigFile(v *viper.Viper, file string, known map[string]bool) error {
	b, _, err := readCapped(file, maxConfigFile)
	if err != nil {
		var tl *tooLargeError
		if errors.As(err, &tl) {
			return errorf("the config file holds a few settings; check the path given to --config", "config file %v", err)
		}
		return errorf("check the path given to --config", "config file: %v", err)
	}
	settings, err := parseYAMLMapping(b)
	if err != nil {
		hint := "the config file is YAML with the flag names as keys, e.g. concurrency: 8; see samples/provision.yaml"
		var ye *yamlError
		if errors.As(err, &ye) && ye.scalar {
			hint = "a secret goes in its own file, given with --shared-secret-file, --admin-token-file, --mas-client-secret-file or --ldap-password-file; --config takes settings (see samples/provision.yaml)"
		}
		return errorf(hint, "config file %s: %v", file, err)
	}
	if err := v.MergeConfigMap(settings); err != nil {
		return errorf("see samples/provision.yaml", "config file %s: the settings cannot be read", file)
	}
	// A misspelt key must not be silently ignored: it would leave a safety setting at
	// its default.
	var unknown []string
	for _, k := range v.AllKeys() {
		if !v.InConfig(k) {
			continue
		}
		top := strings.SplitN(k, ".", 2)[0]
		if !known[top] || top == fConfig {
			unknown = append(unknown, printableKey(top))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		hint := "the keys are the flag names without dashes in front (see provision --help)"
		if s := closest(unknown[0], known); s != "" {
			hint = fmt.Sprintf("did you mean %q? %s", s, hint)
		}
		for _, k := range unknown {
			switch k {
			case "server_name", "registration_shared_secret", "registration_shared_secret_path", "password_config":
				hint = "this looks like Synapse's homeserver.yaml: pass it with --synapse-config, and keep provision's own settings in another file"
			case "shared-secret", "admin-token", "mas-client-secret", "ldap-password":
				hint = "a secret never goes in the config file: use shared-secret-file, admin-token-file, mas-client-secret-file or ldap-password-file"
			}
		}
		const most = 8
		list := strings.Join(unknown, ", ")
		if len(unknown) > most {
			list = fmt.Sprintf("%s and %d more", strings.Join(unknown[:most], ", "), len(unknown)-most)
		}
		return errorf(hint, "config file %s: unknown key(s): %s", file, list)
	}
	return nil
}

// Validate checks the values that do not depend on other files or the network. It
// normalises a few spellings (--format yml, --ldap-scope subtree) on the way.
func (c *Config) Validate() error {
	if err := checkServerURL("--homeserver", c.Homeserver, c.AllowInsecureHTTP,
		"give the base URL clients use, e.g. https://matrix.example.org",
		"generated passwords and the shared secret's MAC"); err != nil {
		return err
	}
	if c.Concurrency < 1 || c.Concurrency > 1024 {
		return errorf("use a value between 1 and 1024; 4 to 16 suits most servers", "--concurrency %d is out of range", c.Concurrency)
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return errorf("use a positive number of registrations per second, 0 for no limit, or auto", "--rate %v is not valid", c.Rate)
	}
	if c.PasswordLength < 8 || c.PasswordLength > 72 {
		return errorf("use a length between 8 and 72 (bcrypt ignores everything after 72 bytes); 24 is the default",
			"--password-length %d is out of range", c.PasswordLength)
	}
	if c.Timeout < 0 || c.RequestTimeout <= 0 {
		return errorf("use a positive duration such as 30s or 10m", "--timeout and --request-timeout must be positive")
	}
	if c.RetryBudget <= 0 {
		return errorf("use a positive duration such as 5m: how long one request may be retried through server errors",
			"--retry-budget %s must be positive", c.RetryBudget)
	}
	if c.MaxRetryAfter <= 0 {
		return errorf("use a positive duration such as 10m: the longest rate-limit pause to wait out",
			"--max-retry-after %s must be positive", c.MaxRetryAfter)
	}
	if err := c.validateRoster(); err != nil {
		return err
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return errorf("use debug, info, warn or error", "unknown --log-level %q", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return errorf("use text or json", "unknown --log-format %q", c.LogFormat)
	}
	if c.Report != "-" {
		switch strings.ToLower(filepath.Ext(c.Report)) {
		case ".csv", ".json":
		default:
			return errorf("name the report file with a .csv or .json extension", "--report %s: cannot tell the format from the extension", c.Report)
		}
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return errorf("give an absolute path, e.g. --state-dir /var/lib/provision", "--state-dir %q is not an absolute path", c.StateDir)
	}
	if strings.ContainsFunc(c.SSOProvider, unicode.IsControl) {
		return errorf("give the provider's ID as the server knows it, e.g. oidc-keycloak", "--sso-provider holds a control character")
	}
	if err := c.validateAccess(); err != nil {
		return err
	}
	return c.validateAdmin()
}

// validateRoster checks the roster's settings: a file's format, or a directory's
// settings (see directory.go).
func (c *Config) validateRoster() error {
	if c.noRoster {
		return nil
	}
	if c.IsDirectory() {
		return c.validateDirectory()
	}
	if c.Roster == "" {
		return errorf("name a roster file (team.csv) or a directory (ldaps://ldap.example.org/ou=people,dc=example,dc=org)", "no roster given")
	}
	switch c.Format {
	case "", "csv", "yaml":
	case "yml":
		c.Format = "yaml"
	default:
		return errorf("use --format csv or --format yaml", "unknown roster format %q", c.Format)
	}
	if c.Roster == "-" && c.Format == "" {
		return errorf("add --format csv or --format yaml", "a roster read from standard input needs --format")
	}
	return c.refuseDirectorySettings()
}

// adminOnly are the options that change existing accounts: shared-secret
// registration cannot, so without an admin token or MAS they would be silently
// ignored, and an operator who asked for deactivations must know they will not happen.
func (c *Config) adminOnly() []struct {
	set  bool
	name string
} {
	return []struct {
		set  bool
		name string
	}{{c.Update, fUpdate}, {c.DeactivateMissing, fDeactivateMissing}, {c.ResetPasswords, fResetPasswords}, {c.Erase, fErase}, {c.LeaveDroppedRooms, fLeaveDropped}}
}

func (c *Config) validateAdmin() error {
	if c.AdminToken == nil && c.MAS == "" {
		for _, f := range c.adminOnly() {
			if f.set {
				return errorf("give a Synapse admin's access token with --admin-token-file FILE (or PROVISION_ADMIN_TOKEN), or use --mas on a server that delegates to MAS; shared-secret registration can only create accounts",
					"--%s needs the Synapse admin API or MAS", f.name)
			}
		}
	}
	if c.Erase && !c.DeactivateMissing {
		return errorf("add --deactivate-missing, or drop --erase", "--erase only applies to accounts --deactivate-missing deactivates")
	}
	if c.MaxDeactivate < -1 {
		return errorf("use a number of accounts, or -1 for no limit", "--max-deactivate %d is not valid", c.MaxDeactivate)
	}
	if c.MinRoster < 0 {
		return errorf("use a number of users, or 0 for no floor", "--min-roster %d is not valid", c.MinRoster)
	}
	if c.MinRosterRatio < 0 || c.MinRosterRatio > 1 || math.IsNaN(c.MinRosterRatio) {
		return errorf("use a fraction between 0 and 1, e.g. 0.5 to stop when the roster lost half its people; 0 turns the check off",
			"--min-roster-ratio %v is not valid", c.MinRosterRatio)
	}
	return nil
}

// checkServerURL checks an http(s) base URL. Plain http:// is refused to anything but
// this machine unless allowInsecure: exposed says what would cross the network.
func checkServerURL(flag, raw string, allowInsecure bool, example, exposed string) error {
	u, err := url.Parse(raw)
	if err == nil && u.User != nil {
		// Not quoted: the user part may be a password.
		return errorf("remove the user name and password from the URL; secrets go in files (see --help)", "%s: the URL holds a user name or password", flag)
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errorf(example, "%s %q is not an http(s) URL", flag, raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) && !allowInsecure {
		return errorf("use https://, or pass --allow-insecure-http if the network between here and the server is trusted",
			"refusing plain http:// to %s: %s would cross the network unencrypted", u.Host, exposed)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// closest returns the known name nearest to s by edit distance, if it is close.
func closest(s string, known map[string]bool) string {
	best, bestD := "", 3
	for k := range known {
		if d := suggest.Distance(s, k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	return best
}
