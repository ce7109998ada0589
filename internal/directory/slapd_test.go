package directory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/provision-matrix/provision/internal/roster"
	"github.com/provision-matrix/provision/internal/slapdtest"
)

// people is more than two pages of 1,000 (the reader's size limit without paging) and
// five of the default page size.
const people = 2500

func TestMain(m *testing.M) { slapdtest.Main(m, people) }

// config is a reader's configuration for the shared server, over plain ldap:// to
// 127.0.0.1 (allowed: loopback).
func config(t *testing.T, base, filter string) (Config, *slapdtest.Server) {
	t.Helper()
	s := slapdtest.Shared(t)
	q, err := NewQuery(s.LDAPURL, base, "", filter)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Query: q, BindDN: slapdtest.BindDN, BindPassword: s.BindPassword, SpoolDir: t.TempDir(), Timeout: 20 * time.Second}, s
}

func readAll(t *testing.T, cfg Config) (map[string]Person, Stats) {
	t.Helper()
	res, err := Read(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	defer res.Close()
	got := map[string]Person{}
	if err := res.Each(func(p Person) error {
		got[p.Localpart] = p
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got, res.Stats()
}

// Without the paging control the reader's search stops at 1,000 entries, as AD's
// would: this is what makes the paging in Read necessary, and the other tests prove
// it works.
func TestWithoutPagingTheSearchIsCut(t *testing.T) {
	s := slapdtest.Shared(t)
	conn, err := ldap.DialURL(s.LDAPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Bind(slapdtest.BindDN, string(s.BindPassword)); err != nil {
		t.Fatal(err)
	}
	res, err := conn.Search(ldap.NewSearchRequest(slapdtest.PeopleDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=inetOrgPerson)", []string{"uid"}, nil))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		t.Fatalf("search without paging: err = %v; want size limit exceeded", err)
	}
	if len(res.Entries) != slapdtest.SizeLimit {
		t.Errorf("search without paging returned %d entries; want the limit, %d", len(res.Entries), slapdtest.SizeLimit)
	}
}

func TestReadsEveryoneWithTheLDAPPreset(t *testing.T) {
	cfg, _ := config(t, slapdtest.PeopleDN, "")
	got, st := readAll(t, cfg)
	if st.Entries != people || st.Users != people || len(got) != people {
		t.Fatalf("entries %d, users %d, read back %d; want %d of each", st.Entries, st.Users, len(got), people)
	}
	if st.Pages < people/DefaultPageSize {
		t.Errorf("%d pages; want at least %d at page size %d", st.Pages, people/DefaultPageSize, DefaultPageSize)
	}
	want := map[string]Person{
		"user00001": {User: roster.User{Localpart: "user00001", DisplayName: "User 1", Email: "user00001@example.org"}, DN: "uid=user00001," + slapdtest.PeopleDN},
		// No displayName on every 7th: the preset falls back on cn.
		"user00007": {User: roster.User{Localpart: "user00007", DisplayName: "Person 7", Email: "user00007@example.org"}, DN: "uid=user00007," + slapdtest.PeopleDN},
		"user02500": {User: roster.User{Localpart: "user02500", DisplayName: "User 2500", Email: "user02500@example.org"}, DN: "uid=user02500," + slapdtest.PeopleDN},
	}
	for lp, w := range want {
		g := got[lp]
		if g.DN != w.DN || g.DisplayName != w.DisplayName || g.Email != w.Email || g.Original != "" || len(g.Rooms) != 0 {
			t.Errorf("%s = %+v; want %+v", lp, g, w)
		}
	}
}

// A page size above the server's per-page limit, and a small one: the roster is the
// same.
func TestPageSizes(t *testing.T) {
	for _, size := range []int{7, 1000} {
		cfg, _ := config(t, slapdtest.PeopleDN, "")
		cfg.PageSize = size
		_, st := readAll(t, cfg)
		if st.Users != people {
			t.Errorf("page size %d: %d users; want %d", size, st.Users, people)
		}
	}
}

func TestADPresetLeavesOutDisabledAccounts(t *testing.T) {
	cfg, _ := config(t, slapdtest.PeopleDN, "(objectClass=provisionTestADUser)")
	m, err := ParseMapping("ad,sso_subject=objectGUID")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Mapping, cfg.SSOProvider = m, "oidc-corp"
	got, st := readAll(t, cfg)
	disabled := people / 100
	if st.Disabled != disabled || st.Users != people-disabled {
		t.Errorf("disabled %d, users %d; want %d and %d", st.Disabled, st.Users, disabled, people-disabled)
	}
	if _, ok := got["user00100"]; ok {
		t.Error("user00100 (userAccountControl 514, disabled) is on the roster")
	}
	// AD keeps the capitals of sAMAccountName; the roster lowercases them and says so.
	if st.Lowercased != st.Users {
		t.Errorf("%d lowercased; want all %d", st.Lowercased, st.Users)
	}
	p := got["user00012"]
	if p.Original != "User00012" {
		t.Errorf("user00012 written %q; want User00012", p.Original)
	}
	// objectGUID 00 01 02 03 04 05 06 07 08 09 00 00 00 00 00 32 (see scripts/slapd).
	if p.SSOProvider != "oidc-corp" || p.SSOSubject != "03020100-0504-0706-0809-000000000032" {
		t.Errorf("user00012 SSO = %q %q; want oidc-corp 03020100-0504-0706-0809-000000000032", p.SSOProvider, p.SSOSubject)
	}
}

func TestCustomMapping(t *testing.T) {
	cfg, _ := config(t, slapdtest.PeopleDN, "")
	m, err := ParseMapping("localpart=mail,displayname=sn+cn,sso_subject=entryUUID,sso_provider=cn")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Mapping = m
	cfg.Query.Filter = "(|(uid=user00003)(uid=user00004))"
	got, st := readAll(t, cfg)
	if st.Users != 2 {
		t.Fatalf("%d users; want 2", st.Users)
	}
	p := got["user00003"]
	if p.DisplayName != "3 Person 3" || p.Email != "" || p.SSOProvider != "Person 3" || len(p.SSOSubject) != 36 {
		t.Errorf("user00003 = %+v; want display name \"3 Person 3\", no email, SSO from cn and entryUUID", p)
	}
}

func TestRoomsFromGroups(t *testing.T) {
	cfg, _ := config(t, slapdtest.PeopleDN, "")
	rooms, err := ParseRoomsMap([]byte(`
cn=staff,ou=groups,dc=example,dc=org: ["#staff:example.org"]
Engineering:
  - "#engineering:example.org"
  - "#staff:example.org"
nosuchgroup: ["#nobody:example.org"]
`), "rooms.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rooms = rooms
	got, st := readAll(t, cfg)
	want := map[string][]string{
		"user00001": nil,
		"user00002": {"#staff:example.org"},
		"user00003": {"#engineering:example.org", "#staff:example.org"},
		"user00006": {"#staff:example.org", "#engineering:example.org"},
	}
	for lp, w := range want {
		if g := got[lp].Rooms; strings.Join(g, " ") != strings.Join(w, " ") {
			t.Errorf("%s rooms = %q; want %q", lp, g, w)
		}
	}
	// Every 2nd is staff, every 3rd engineering.
	if n := people/2 + people/3 - people/6; st.WithRooms != n {
		t.Errorf("%d users with rooms; want %d", st.WithRooms, n)
	}
}

func TestRoomsWithoutMemberOf(t *testing.T) {
	cfg, _ := config(t, slapdtest.BadDN, "(cn=Alice One)")
	cfg.Rooms, _ = ParseRoomsMap([]byte(`staff: ["#staff:example.org"]`), "rooms.yaml")
	_, err := Read(t.Context(), cfg)
	if !errors.Is(err, ErrNoMemberOf) {
		t.Errorf("err = %v; want ErrNoMemberOf", err)
	}
}

func TestInvalidEntriesNameDNAndAttribute(t *testing.T) {
	cfg, _ := config(t, slapdtest.BadDN, "")
	_, err := Read(t.Context(), cfg)
	var re *roster.Errors
	if !errors.As(err, &re) {
		t.Fatalf("err = %v; want *roster.Errors", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`cn=Bob Smith,ou=bad,dc=example,dc=org: uid: "Bob Smith" is not a valid localpart: space at position 4 — use only a-z, 0-9 and . _ = - / +`,
		`cn=Carol,ou=bad,dc=example,dc=org: mail: "carol.example.org" is not an email address: it has no "@"`,
		`cn=Alice Two,ou=bad,dc=example,dc=org: uid: duplicate localpart "alice": already at cn=Alice One,ou=bad,dc=example,dc=org`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the problems do not contain\n%s\ngot:\n%s", want, msg)
		}
	}
	if re.Total != 3 {
		t.Errorf("%d problems; want 3:\n%s", re.Total, msg)
	}
}

func TestWrongPasswordIsErrBind(t *testing.T) {
	cfg, _ := config(t, slapdtest.PeopleDN, "")
	cfg.BindPassword = []byte("not-the-password-s3cr3t")
	_, err := Read(t.Context(), cfg)
	if !errors.Is(err, ErrBind) {
		t.Fatalf("err = %v; want ErrBind", err)
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("the error shows the password: %v", err)
	}
	if !strings.Contains(err.Error(), "49") || !strings.Contains(err.Error(), "--ldap-password-file") {
		t.Errorf("the error should name result 49 and where the password comes from: %v", err)
	}
}

func TestLDAPS(t *testing.T) {
	s := slapdtest.Shared(t)
	q, err := ParseURL(s.LDAPSURL + "/" + slapdtest.PeopleDN + "??sub?(uid=user0000*)")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Query: q, BindDN: slapdtest.BindDN, BindPassword: s.BindPassword, CAFile: s.CAFile, SpoolDir: t.TempDir()}
	if _, st := readAll(t, cfg); st.Users != 9 {
		t.Errorf("ldaps: %d users; want 9", st.Users)
	}

	t.Run("wrong CA", func(t *testing.T) {
		cfg := cfg
		cfg.CAFile = otherCA(t)
		_, err := Read(t.Context(), cfg)
		if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "--ca-file") {
			t.Errorf("err = %v; want ErrTLS with a hint about --ca-file", err)
		}
	})
	t.Run("system CAs", func(t *testing.T) {
		cfg := cfg
		cfg.CAFile = ""
		if _, err := Read(t.Context(), cfg); !errors.Is(err, ErrTLS) {
			t.Errorf("err = %v; want ErrTLS", err)
		}
	})
}

func TestStartTLS(t *testing.T) {
	cfg, s := config(t, slapdtest.PeopleDN, "(uid=user0001*)")
	cfg.StartTLS, cfg.CAFile = true, s.CAFile
	if _, st := readAll(t, cfg); st.Users != 10 {
		t.Errorf("StartTLS: %d users; want 10", st.Users)
	}
	cfg.CAFile = otherCA(t)
	if _, err := Read(t.Context(), cfg); !errors.Is(err, ErrTLS) {
		t.Errorf("StartTLS with the wrong CA: err = %v; want ErrTLS", err)
	}
}

func TestEmptyResult(t *testing.T) {
	for name, base := range map[string]string{"empty OU": slapdtest.EmptyDN, "no such base": "ou=nobody," + slapdtest.Suffix} {
		t.Run(name, func(t *testing.T) {
			cfg, _ := config(t, base, "")
			_, err := Read(t.Context(), cfg)
			if !errors.Is(err, ErrEmptyResult) || !strings.Contains(err.Error(), "nothing was changed") {
				t.Errorf("err = %v; want ErrEmptyResult saying nothing was changed", err)
			}
		})
	}
	t.Run("only disabled", func(t *testing.T) {
		cfg, _ := config(t, slapdtest.PeopleDN, "(&(objectClass=provisionTestADUser)(userAccountControl=514))")
		cfg.Mapping, _ = ParseMapping("ad")
		_, err := Read(t.Context(), cfg)
		if !errors.Is(err, ErrEmptyResult) || !strings.Contains(err.Error(), "disabled") {
			t.Errorf("err = %v; want ErrEmptyResult about disabled accounts", err)
		}
	})
}

func TestUnreachable(t *testing.T) {
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	q, err := ParseURL("ldap://" + addr + "/dc=example,dc=org")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Read(t.Context(), Config{Query: q, SpoolDir: t.TempDir(), Timeout: 5 * time.Second})
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("err = %v; want ErrUnreachable", err)
	}
}

func TestCancel(t *testing.T) {
	cfg, _ := config(t, slapdtest.PeopleDN, "")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Read(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v; want context.Canceled", err)
	}
}

// otherCA writes a CA that did not sign the server's certificate.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
