// Package config turns flags, environment variables and a YAML config file into one
// validated Config. It is the only package that knows about viper.
//
// Precedence, highest first: command-line flags, PROVISION_<NAME> environment variables,
// the --config file, defaults. Secrets never come from a flag: they are read from files
// (--shared-secret-file, --admin-token-file, --synapse-config) or from the environment
// (PROVISION_SHARED_SECRET, PROVISION_ADMIN_TOKEN).
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

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/provision-matrix/provision/internal/password"
	"github.com/provision-matrix/provision/internal/suggest"
)

// EnvPrefix is the prefix of every environment variable provision reads.
const EnvPrefix = "PROVISION"

// Config is everything a run needs, validated.
type Config struct {
	Roster string // path, or "-" for stdin
	Format string // "csv", "yaml" or "" (by extension)
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

	Recipients     []string
	RecipientsFile string
	Credentials    string
	Plaintext      bool
	HandoffDir     string
	OperatorCopy   bool
	Force          bool

	Report  string
	Journal string
	Fresh   bool

	Concurrency    int     // requests in flight at once; with RateAuto, at most
	Rate           float64 // registrations started per second; 0 = no limit
	RateAuto       bool    // --rate auto: find the server's capacity while running (Rate is 0)
	PasswordLength int
	DryRun         bool
	Timeout        time.Duration // whole run; 0 = none
	RequestTimeout time.Duration

	// Admin-token mode (the Synapse admin API) only: what a run may change beyond
	// creating accounts.
	Update            bool // change existing accounts to match the roster
	DeactivateMissing bool // deactivate accounts provision created that left the roster
	Erase             bool // erase them too (GDPR erasure for future readers)
	MaxDeactivate     int  // abort when more would be deactivated; -1 = no limit
	ResetPasswords    bool // give existing accounts new passwords
	LogoutDevices     bool // with ResetPasswords: log out their devices (Synapse's default)

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
	fs.String(fCAFile, "", "trust this PEM `FILE` of CA certificates (a private CA) in addition to the system's")
	fs.Bool(fAllowInsecureHTTP, false, "allow plain http:// to a host that is not this machine (passwords then cross the network unencrypted)")

	fs.String(fSharedSecretFile, "", "read the registration shared secret from `FILE` (or set PROVISION_SHARED_SECRET)")
	fs.String(fAdminTokenFile, "", "read a Synapse admin access token from `FILE` (or set PROVISION_ADMIN_TOKEN)")
	fs.StringArray(fSynapseConfig, nil, "read registration_shared_secret(_path), server_name and password policy from this Synapse config `FILE` (repeatable, later files win)")

	fs.StringArray(fRecipient, nil, "encrypt the credentials to this age (age1...) or SSH public `KEY` (repeatable)")
	fs.String(fRecipientsFile, "", "encrypt the credentials to every public key in `FILE` (one per line, # comments)")
	fs.String(fCredentials, "", "write the encrypted credentials of created users to `FILE` (default: credentials-TIME.age)")
	fs.Bool(fPlaintext, false, "write the credentials file unencrypted (mode 0600) when you have no age or SSH key")
	fs.String(fHandoffDir, "handoff", "write each user's own encrypted welcome file (roster column recipient) into `DIR`")
	fs.Bool(fOperatorCopy, false, "also put passwords of users with their own recipient into the operator's credentials file")
	fs.Bool(fForce, false, "overwrite an existing credentials or welcome file")

	fs.String(fReport, "-", "write the results report to `FILE` (.csv or .json; - for standard output)")
	fs.String(fJournal, "", "keep the resumable journal in `FILE` (default: next to the report, or ./provision.journal)")
	fs.Bool(fFresh, false, "start a new journal instead of resuming the old one (the old one is kept with a .old suffix)")

	fs.Int(fConcurrency, DefaultConcurrency, "registrations in flight at once (with --rate auto: at most, default 256)")
	fs.String(fRate, strconv.Itoa(DefaultRate), "start at most `N` registrations per second (0 = no limit), or auto: find the server's capacity while running")
	fs.Int(fPasswordLength, DefaultPasswordLength, "length of generated passwords (at most 72: bcrypt ignores the rest)")
	fs.Bool(fDryRun, false, "validate the roster and check who exists already; change nothing")
	fs.Duration(fTimeout, 0, "give up the whole run after this long, e.g. 30m (0 = never)")
	fs.Duration(fRequestTimeout, DefaultRequestTimeout, "give up one request after this long")

	fs.Bool(fUpdate, false, "admin token only: change existing accounts whose display name, email or admin flag differ from the roster, and join them to rooms the roster added")
	fs.Bool(fDeactivateMissing, false, "admin token only: deactivate accounts that provision created and that are no longer in the roster")
	fs.Bool(fErase, false, "with --deactivate-missing: also erase their profiles and messages (GDPR erasure)")
	fs.Int(fMaxDeactivate, DefaultMaxDeactivate, "abort the whole run, before changing anything, when more than `N` accounts would be deactivated (-1 = no limit)")
	fs.Bool(fResetPasswords, false, "admin token only: give every existing account of the roster a new password, handed off like new ones")
	fs.Bool(fLogoutDevices, true, "with --reset-passwords: log out every device of those accounts (--logout-devices=false keeps them)")

	fs.String(fLogLevel, "info", "log level: debug, info, warn or error")
	fs.String(fLogFormat, "text", "log format when standard error is not a terminal: text or json")
	fs.BoolP(fQuiet, "q", false, "print only errors (for cron)")
	fs.String(fMetricsFile, "", "write Prometheus metrics of the run to `FILE` (for node_exporter's textfile collector, e.g. /var/lib/node_exporter/provision.prom)")
}

// Load reads the config file named by --config (if any), the environment and the flags
// in fs, and returns a validated Config. args are the positional arguments.
func Load(fs *pflag.FlagSet, args []string, getenv func(string) string) (*Config, error) {
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

	if file := v.GetString(fConfig); file != "" {
		if err := readConfigFile(v, file, known); err != nil {
			return nil, err
		}
	}

	c := &Config{
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
		Fresh:             v.GetBool(fFresh),
		Concurrency:       v.GetInt(fConcurrency),
		Rate:              v.GetFloat64(fRate),
		PasswordLength:    v.GetInt(fPasswordLength),
		DryRun:            v.GetBool(fDryRun),
		Timeout:           v.GetDuration(fTimeout),
		RequestTimeout:    v.GetDuration(fRequestTimeout),
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
	for _, k := range []string{fConcurrency, fRate, fPasswordLength, fTimeout, fRequestTimeout, fMaxDeactivate} {
		if err := checkNumber(v, k); err != nil {
			return nil, err
		}
	}

	switch len(args) {
	case 0:
		return nil, errorf("name a roster file, e.g. provision --shared-secret-file secret.txt team.csv", "no roster given")
	case 1:
		c.Roster = args[0]
	default:
		return nil, errorf("give exactly one roster file; merge rosters into one first", "%d rosters given: %s", len(args), strings.Join(args, " "))
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
	if c.Journal == "" {
		if c.Report != "" && c.Report != "-" {
			c.Journal = c.Report + ".journal"
		} else {
			c.Journal = "provision.journal"
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
	case fTimeout, fRequestTimeout:
		_, err = time.ParseDuration(s)
	case fRate:
		if !isAuto(s) {
			_, err = strconv.ParseFloat(s, 64)
		}
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

// Validate checks the values that do not depend on other files or the network.
func (c *Config) Validate() error {
	u, err := url.Parse(c.Homeserver)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errorf("give the base URL clients use, e.g. https://matrix.example.org", "--homeserver %q is not an http(s) URL", c.Homeserver)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) && !c.AllowInsecureHTTP {
		return errorf("use https://, or pass --allow-insecure-http if the network between here and the server is trusted",
			"refusing plain http:// to %s: generated passwords and the shared secret's MAC would cross the network unencrypted", u.Host)
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
	if c.SharedSecret == nil && c.AdminToken == nil {
		return errorf("pass --shared-secret-file FILE, set PROVISION_SHARED_SECRET, or pass --synapse-config /etc/matrix-synapse/homeserver.yaml\n"+
			"        (or, on Synapse, an admin's access token with --admin-token-file FILE or PROVISION_ADMIN_TOKEN)",
			"no registration shared secret configured")
	}
	return c.validateAdmin()
}

// validateAdmin checks the admin-token mode's options: without a token they would be
// silently ignored, and an operator who asked for deactivations must know they will
// not happen.
func (c *Config) validateAdmin() error {
	if c.AdminToken == nil {
		for _, f := range []struct {
			set  bool
			name string
		}{{c.Update, fUpdate}, {c.DeactivateMissing, fDeactivateMissing}, {c.ResetPasswords, fResetPasswords}, {c.Erase, fErase}} {
			if f.set {
				return errorf("give a Synapse admin's access token with --admin-token-file FILE (or PROVISION_ADMIN_TOKEN); shared-secret registration can only create accounts",
					"--%s needs the Synapse admin API", f.name)
			}
		}
	}
	if c.Erase && !c.DeactivateMissing {
		return errorf("add --deactivate-missing, or drop --erase", "--erase only applies to accounts --deactivate-missing deactivates")
	}
	if c.MaxDeactivate < -1 {
		return errorf("use a number of accounts, or -1 for no limit", "--max-deactivate %d is not valid", c.MaxDeactivate)
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
