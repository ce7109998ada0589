package directory

import (
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/provision-matrix/provision/internal/roster"
)

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Query
	}{
		{"ldaps://ldap.example.org/ou=people,dc=example,dc=org?uid,cn,mail?sub?(objectClass=inetOrgPerson)",
			Query{Scheme: "ldaps", Host: "ldap.example.org", Port: 636, BaseDN: "ou=people,dc=example,dc=org", Attributes: []string{"uid", "cn", "mail"}, Scope: ScopeSub, Filter: "(objectClass=inetOrgPerson)"}},
		// No scope: sub, not RFC 4516's base (see ParseURL).
		{"ldap://127.0.0.1/dc=example,dc=org", Query{Scheme: "ldap", Host: "127.0.0.1", Port: 389, BaseDN: "dc=example,dc=org"}},
		{"LDAPS://[::1]:1636/ou=Staff%20People,dc=example,dc=org??one?(%26(objectClass=user)(mail=*))",
			Query{Scheme: "ldaps", Host: "::1", Port: 1636, BaseDN: "ou=Staff People,dc=example,dc=org", Scope: ScopeOne, Filter: "(&(objectClass=user)(mail=*))"}},
		{"ldap://localhost:3389/dc=example,dc=org??base", Query{Scheme: "ldap", Host: "localhost", Port: 3389, BaseDN: "dc=example,dc=org", Scope: ScopeBase}},
		{"ldaps://dc1.corp.example.org/DC=corp,DC=example,DC=org???(objectClass=user)?x-ext=1",
			Query{Scheme: "ldaps", Host: "dc1.corp.example.org", Port: 636, BaseDN: "DC=corp,DC=example,DC=org", Filter: "(objectClass=user)"}},
	}
	for _, tt := range tests {
		got, err := ParseURL(tt.in)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseURL(%q) = %+v; want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"ldap.example.org/dc=x":                    "not an LDAP URL",
		"http://ldap.example.org/dc=x":             "must be ldap or ldaps",
		"ldaps:///dc=example,dc=org":               "no host",
		"ldaps://ldap.example.org":                 "no base DN",
		"ldaps://ldap.example.org:99999/dc=x":      "not a port number",
		"ldaps://ldap.example.org/dc=x??deep":      "no such scope",
		"ldaps://ldap.example.org/dc=x???uid=a)(":  "filter",
		"ldaps://ldap.example.org/nonsense":        "base DN",
		"ldaps://ldap.example.org/dc=x????!crit=1": "critical extension",
		"ldaps://ldap.example.org/dc=x%zz":         "percent-encoding",
		"ldapi://%2Fvar%2Frun%2Fslapd.sock/dc=x":   "not supported",
	}
	for in, want := range tests {
		_, err := ParseURL(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), " — ") {
			t.Errorf("ParseURL(%q) = %v; want an error about %q with a hint", in, err, want)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	f.Add("ldaps://ldap.example.org/ou=people,dc=example,dc=org?uid,cn,mail?sub?(objectClass=inetOrgPerson)")
	f.Add("ldap://[::1]:389/dc=x??one?(%26(a=b)(c=d))?!ext")
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseURL(s)
		if err != nil {
			return
		}
		// What was accepted prints as a URL that reads back the same.
		again, err := ParseURL(q.String())
		if err != nil {
			t.Fatalf("ParseURL(%q) = %+v, whose String %q does not parse: %v", s, q, q.String(), err)
		}
		if again.Host != q.Host || again.Port != q.Port || again.BaseDN != q.BaseDN || again.Scope != q.Scope || again.Filter != q.Filter {
			t.Fatalf("ParseURL(%q) = %+v; again from %q: %+v", s, q, q.String(), again)
		}
	})
}

func TestPlainLDAPToAnotherHostIsRefusedBeforeDialling(t *testing.T) {
	dialled := false
	old := dialURL
	dialURL = func(addr string, opts ...ldap.DialOpt) (*ldap.Conn, error) {
		dialled = true
		return nil, errors.New("no")
	}
	t.Cleanup(func() { dialURL = old })
	for _, u := range []string{"ldap://ldap.example.org/dc=example,dc=org", "ldap://10.0.0.5/dc=example,dc=org", "ldap://[2001:db8::1]/dc=x"} {
		q, err := ParseURL(u)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Read(t.Context(), Config{Query: q, BindDN: "cn=reader,dc=example,dc=org", BindPassword: []byte("pw"), SpoolDir: t.TempDir()})
		if !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "--ldap-start-tls") {
			t.Errorf("%s: err = %v; want ErrInsecure with a hint", u, err)
		}
	}
	if dialled {
		t.Error("a connection was attempted")
	}
	// Loopback and StartTLS are fine (the dial then fails here, on purpose).
	for _, c := range []Config{
		{Query: Query{Scheme: "ldap", Host: "127.0.0.2", Port: 389, BaseDN: "dc=x"}},
		{Query: Query{Scheme: "ldap", Host: "::1", Port: 389, BaseDN: "dc=x"}},
		{Query: Query{Scheme: "ldap", Host: "ldap.example.org", Port: 389, BaseDN: "dc=x"}, StartTLS: true},
	} {
		c.SpoolDir = t.TempDir()
		if _, err := Read(t.Context(), c); errors.Is(err, ErrInsecure) {
			t.Errorf("%+v refused: %v", c.Query, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	q := Query{Scheme: "ldaps", Host: "ldap.example.org", Port: 636, BaseDN: "dc=example,dc=org"}
	sso, _ := ParseMapping("ldap,sso_subject=entryUUID")
	tests := map[string]struct {
		c    Config
		want string
	}{
		"empty password":       {Config{Query: q, BindDN: "cn=r,dc=x"}, "unauthenticated bind"},
		"password without dn":  {Config{Query: q, BindPassword: []byte("x")}, "without --ldap-bind-dn"},
		"starttls on ldaps":    {Config{Query: q, StartTLS: true}, "TLS already"},
		"missing CA file":      {Config{Query: q, CAFile: "/nonexistent/ca.pem"}, "--ca-file"},
		"CA file not PEM":      {Config{Query: q, CAFile: "directory_test.go"}, "no PEM certificate"},
		"sso without provider": {Config{Query: q, Mapping: sso}, "--ldap-sso-provider"},
		"page size":            {Config{Query: q, PageSize: -1}, "page size"},
		"bad sso provider":     {Config{Query: q, Mapping: sso, SSOProvider: "oidc-my okta"}, "--ldap-sso-provider: \"oidc-my okta\" is not a Synapse OIDC provider ID"},
	}
	for name, tt := range tests {
		err := tt.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want an error about %q", name, err, tt.want)
		}
	}
}

func TestParseMapping(t *testing.T) {
	t.Parallel()
	for spec, want := range map[string]string{
		"":                              "localpart=uid,displayname=displayName|cn,email=mail",
		"AD":                            "localpart=sAMAccountName,displayname=displayName|cn,email=mail",
		"ad,sso_subject=objectGUID":     "localpart=sAMAccountName,displayname=displayName|cn,email=mail,sso_subject=objectGUID",
		"ldap,displayname=givenName+sn": "localpart=uid,displayname=givenName+sn,email=mail",
		"localpart=uid":                 "localpart=uid",
	} {
		m, err := ParseMapping(spec)
		if err != nil {
			t.Errorf("ParseMapping(%q): %v", spec, err)
			continue
		}
		if m.String() != want {
			t.Errorf("ParseMapping(%q) = %s; want %s", spec, m, want)
		}
	}
	for spec, want := range map[string]string{
		"okta":                          "no such preset",
		"displayname=cn":                "no localpart",
		"localpart=uid,password=x":      "password cannot be mapped",
		"localpart=uid,rooms=x":         "rooms cannot be mapped",
		"localpart=uid,phone=x":         "unknown key",
		"localpart=uid,localpart=cn":    "mapped twice",
		"localpart=u id":                "not an attribute name",
		"localpart=uid,sso_provider=cn": "sso_provider without sso_subject",
	} {
		if _, err := ParseMapping(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMapping(%q) = %v; want an error about %q", spec, err, want)
		}
	}
}

func TestFormatGUID(t *testing.T) {
	t.Parallel()
	b := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	if got, want := formatGUID(b), "03020100-0504-0706-0809-0a0b0c0d0e0f"; got != want {
		t.Errorf("formatGUID = %s; want %s", got, want)
	}
}

// The ad preset on entries as Active Directory sends them.
func TestADPresetOnEntries(t *testing.T) {
	t.Parallel()
	m, _ := ParseMapping("ad")
	for uac, disabled := range map[string]bool{"512": false, "514": true, "66050": true, "66048": false, "": false, "junk": false} {
		e := ldap.NewEntry("CN=Bob,OU=Staff,DC=corp", map[string][]string{"sAMAccountName": {"Bob"}, "userAccountControl": {uac}})
		if got := m.isDisabled(e); got != disabled {
			t.Errorf("userAccountControl %q: disabled = %v; want %v", uac, got, disabled)
		}
	}
	e := ldap.NewEntry("CN=Bob,OU=Staff,DC=corp", map[string][]string{"samaccountname": {"Bob"}, "CN": {"Bob Builder"}})
	if v, src, ok := m.value(e, tLocalpart); !ok || v != "Bob" || src != "sAMAccountName" {
		t.Errorf("localpart = %q from %q (%v); want Bob from sAMAccountName (attribute names are case-insensitive)", v, src, ok)
	}
	if v, src, _ := m.value(e, tDisplayName); v != "Bob Builder" || src != "cn" {
		t.Errorf("displayname = %q from %q; want the cn when there is no displayName", v, src)
	}
	if got := m.attributes(); !strings.Contains(strings.Join(got, ","), "userAccountControl") {
		t.Errorf("attributes %v do not ask for userAccountControl", got)
	}
}

func TestRoomsMap(t *testing.T) {
	t.Parallel()
	m, err := ParseRoomsMap([]byte("CN=Staff, OU=Groups ,DC=corp: \"#staff:example.org\"\neng: [\"#eng:example.org\", \"!abc:example.org\"]\n"), "rooms.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := m.Rooms([]string{"cn=staff,ou=groups,dc=corp", "CN=Eng,OU=Elsewhere,DC=corp", "not a dn", "cn=other,dc=corp"})
	want := []string{"#staff:example.org", "#eng:example.org", "!abc:example.org"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Rooms = %q; want %q", got, want)
	}
	for in, want := range map[string]string{
		"staff: #staff:example.org\n":    "rooms.yaml:1:7: empty room — did you leave a # unquoted?",
		"staff: [\"staff\"]\n":           `rooms.yaml:1:9: room "staff" is not a room ID or alias`,
		"cn=a,=b: [\"#a:x\"]\n":          "is not a DN",
		"- a\n":                          "must be a mapping",
		"a: [\"#a:x\"]\nA: [\"#b:x\"]\n": "listed twice",
	} {
		if _, err := ParseRoomsMap([]byte(in), "rooms.yaml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRoomsMap(%q) = %v; want %q", in, err, want)
		}
	}
}

func TestSpoolRoundTrip(t *testing.T) {
	t.Parallel()
	s, err := newSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	in := []Person{
		{User: roster.User{Line: 1, Localpart: "alice", Original: "Alice", DisplayName: "Alice Ä", Email: "a@example.org", Rooms: []string{"#a:x", "!b:x"}, SSOProvider: "oidc", SSOSubject: "s-1"}, DN: "uid=Alice,dc=x"},
		{User: roster.User{Line: 3, Localpart: "bob"}, DN: "uid=bob,dc=x"},
	}
	for i := range in {
		if err := s.add(&in[i]); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // read more than once: the run reads it as often as it needs
		var out []Person
		if err := s.each(func(p Person) error { out = append(out, p); return nil }); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out, in) {
			t.Fatalf("read back %+v; want %+v", out, in)
		}
	}
	if got := s.locate(3); got != "at uid=bob,dc=x" {
		t.Errorf("locate(3) = %q", got)
	}
}
