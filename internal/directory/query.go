package directory

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Scope is how deep below the base DN a search looks.
type Scope int

// The scopes of RFC 4511 and 4516.
const (
	ScopeSub  Scope = iota // the base entry and everything below it (the default here)
	ScopeOne               // the entries directly below the base
	ScopeBase              // the base entry alone
)

func (s Scope) String() string {
	switch s {
	case ScopeOne:
		return "one"
	case ScopeBase:
		return "base"
	}
	return "sub"
}

func (s Scope) ldap() int {
	switch s {
	case ScopeOne:
		return ldap.ScopeSingleLevel
	case ScopeBase:
		return ldap.ScopeBaseObject
	}
	return ldap.ScopeWholeSubtree
}

// ParseScope reads base, one or sub (also onelevel, subtree, any case); ""
// is sub.
func ParseScope(s string) (Scope, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "sub", "subtree":
		return ScopeSub, nil
	case "one", "onelevel", "single":
		return ScopeOne, nil
	case "base":
		return ScopeBase, nil
	}
	return 0, fmt.Errorf("scope %s: no such scope — use sub (everything below the base DN), one (the entries directly below it) or base", quote(s))
}

// Query is where and what to search: the server, the base DN, the scope, the
// filter and extra attributes.
type Query struct {
	Scheme string // "ldap" or "ldaps"
	Host   string // a name or an IP address, without brackets
	Port   int
	BaseDN string
	// Attributes are asked for in addition to those the mapping reads.
	Attributes []string
	Scope      Scope
	// Filter selects the people; "" means the mapping's (for the ldap
	// preset (objectClass=inetOrgPerson), for ad
	// (&(objectCategory=person)(objectClass=user)), else (objectClass=*)).
	Filter string
}

// ParseURL reads an LDAP URL (RFC 4516):
//
//	ldap[s]://HOST[:PORT]/BASE-DN[?ATTRIBUTES[?SCOPE[?FILTER[?EXTENSIONS]]]]
//
// for example
//
//	ldaps://ldap.example.org/ou=people,dc=example,dc=org?uid,cn,mail?sub?(objectClass=inetOrgPerson)
//
// Each part is percent-decoded (a "?" or "," inside the filter or DN is
// written %3F or %2C). The port defaults to 389 for ldap and 636 for ldaps.
//
// One deliberate departure from the RFC: when the scope is left out it is
// sub, not base. A base search returns the base entry alone, never a roster,
// so an administrator who leaves the scope out means the people below the
// base DN. base and one are honoured when written. Extensions are refused
// when marked critical ("!"), since none is supported, and otherwise
// ignored.
func ParseURL(s string) (Query, error) {
	q, err := parseURL(s)
	if err != nil {
		return q, err
	}
	return q, q.check()
}

func parseURL(s string) (Query, error) {
	var q Query
	raw := strings.TrimSpace(s)
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return q, fmt.Errorf("%s is not an LDAP URL — write it as ldaps://HOST/BASE-DN, e.g. ldaps://ldap.example.org/ou=people,dc=example,dc=org", quote(raw))
	}
	q.Scheme = strings.ToLower(scheme)
	switch q.Scheme {
	case "ldap":
		q.Port = 389
	case "ldaps":
		q.Port = 636
	case "ldapi":
		return q, fmt.Errorf("%s: ldapi:// (a Unix socket) is not supported — use ldaps://HOST or ldap://127.0.0.1", quote(raw))
	default:
		return q, fmt.Errorf("%s: the scheme must be ldap or ldaps, not %s — write ldaps://HOST/BASE-DN", quote(raw), quote(scheme))
	}
	hostport := rest
	rest = ""
	if i := strings.IndexAny(hostport, "/?"); i >= 0 {
		hostport, rest = hostport[:i], hostport[i:]
		rest = strings.TrimPrefix(rest, "/")
	}
	if err := q.setHost(hostport); err != nil {
		return q, fmt.Errorf("%s: %w", quote(raw), err)
	}
	parts := strings.SplitN(rest, "?", 5)
	dec := make([]string, len(parts))
	for i, p := range parts {
		d, err := url.PathUnescape(p)
		if err != nil {
			return q, fmt.Errorf("%s: bad percent-encoding in %s — write %%25 for a %% sign, %%3F for ?, %%20 for a space", quote(raw), quote(p))
		}
		dec[i] = d
	}
	q.BaseDN = strings.TrimSpace(dec[0])
	if len(dec) > 1 && dec[1] != "" {
		for _, a := range strings.Split(dec[1], ",") {
			if a = strings.TrimSpace(a); a != "" {
				q.Attributes = append(q.Attributes, a)
			}
		}
	}
	if len(dec) > 2 {
		sc, err := ParseScope(dec[2])
		if err != nil {
			return q, fmt.Errorf("%s: %w", quote(raw), err)
		}
		q.Scope = sc
	}
	if len(dec) > 3 {
		q.Filter = strings.TrimSpace(dec[3])
	}
	if len(dec) > 4 {
		for _, ext := range strings.Split(dec[4], ",") {
			if strings.HasPrefix(strings.TrimSpace(ext), "!") {
				return q, fmt.Errorf("%s: critical extension %s is not supported — remove it from the URL", quote(raw), quote(ext))
			}
		}
	}
	return q, nil
}

// NewQuery builds a query from configuration pieces: server is ldap[s]://HOST[:PORT]
// (a path, if any, is the base DN when base is ""), scope as [ParseScope]
// reads it and filter "" for the mapping's.
func NewQuery(server, base, scope, filter string) (Query, error) {
	q, err := parseURL(server)
	if err != nil {
		return q, err
	}
	if base = strings.TrimSpace(base); base != "" {
		q.BaseDN = base
	}
	if strings.TrimSpace(scope) != "" {
		if q.Scope, err = ParseScope(scope); err != nil {
			return q, err
		}
	}
	if filter = strings.TrimSpace(filter); filter != "" {
		q.Filter = filter
	}
	return q, q.check()
}

func (q *Query) setHost(hostport string) error {
	if hostport == "" {
		return fmt.Errorf("no host — name the directory server, e.g. ldaps://ldap.example.org/")
	}
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") || strings.Count(hostport, ":") == 1 {
		h, p, err := net.SplitHostPort(hostport)
		if err != nil {
			h, p = strings.Trim(hostport, "[]"), ""
			if strings.Contains(h, "]") {
				return fmt.Errorf("host %s: %v — write an IPv6 address as [::1]:636", quote(hostport), err)
			}
		}
		host, port = h, p
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %s: not a port number — use 1 to 65535, or leave it out for %d", quote(port), q.Port)
		}
		q.Port = n
	}
	if h, err := url.PathUnescape(host); err == nil {
		host = h
	}
	if strings.Contains(host, ":") && net.ParseIP(host) == nil {
		return fmt.Errorf("host %s: not a host name or address — write an IPv6 address in brackets, e.g. ldaps://[2001:db8::1]:636/", quote(hostport))
	}
	if host == "" || strings.ContainsAny(host, " /?#@[]%") {
		return fmt.Errorf("host %s: not a host name — e.g. ldaps://ldap.example.org/", quote(host))
	}
	q.Host = host
	return nil
}

// check validates the base DN and the filter, so that a typo is reported
// before any connection.
func (q Query) check() error {
	if q.BaseDN == "" {
		return fmt.Errorf("no base DN — say where the people are, e.g. ldaps://%s/ou=people,dc=example,dc=org", q.hostPort())
	}
	if _, err := ldap.ParseDN(q.BaseDN); err != nil {
		return fmt.Errorf("base DN %s: %v — write it as ou=people,dc=example,dc=org", quote(q.BaseDN), err)
	}
	if q.Filter != "" {
		if _, err := ldap.CompileFilter(q.Filter); err != nil {
			return fmt.Errorf("filter %s: %v — write it in parentheses, e.g. (objectClass=inetOrgPerson) or (&(objectClass=user)(mail=*))", quote(q.Filter), err)
		}
	}
	return nil
}

func (q Query) hostPort() string {
	return net.JoinHostPort(q.Host, strconv.Itoa(q.Port))
}

// String is the query as an LDAP URL, for messages.
func (q Query) String() string {
	esc := func(s string) string {
		return strings.NewReplacer("%", "%25", "?", "%3F", " ", "%20").Replace(s)
	}
	s := q.Scheme + "://" + q.hostPort() + "/" + esc(q.BaseDN) + "?" + esc(strings.Join(q.Attributes, ",")) + "?" + q.Scope.String()
	if q.Filter != "" {
		s += "?" + esc(q.Filter)
	}
	return s
}

// loopback tells a host that cannot leave this machine: localhost, or an
// address in 127.0.0.0/8 or ::1. Names are not resolved: a name that DNS
// says is local is not trusted with a password in clear.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// quote quotes a value for a message, escaped and cut short.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strconv.Quote(s)
}
