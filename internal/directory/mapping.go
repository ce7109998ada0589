package directory

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// target is what a mapping fills: a roster column or an SSO binding.
type target int

const (
	tLocalpart target = iota
	tDisplayName
	tEmail
	tAdmin
	tUserType
	tRecipient
	tSSOProvider
	tSSOSubject
	numTargets
)

// targetNames are the keys of a mapping, as --columns names roster columns.
var targetNames = map[string]target{
	"localpart": tLocalpart, "username": tLocalpart,
	"displayname": tDisplayName, "display_name": tDisplayName,
	"email": tEmail, "admin": tAdmin, "user_type": tUserType, "recipient": tRecipient,
	"sso_provider": tSSOProvider, "sso_subject": tSSOSubject,
}

// column is the roster column a target is validated as.
var column = [numTargets]string{"localpart", "displayname", "email", "admin", "user_type", "recipient", "sso_provider", "sso_subject"}

const mappingKeys = "localpart, displayname, email, admin, user_type, recipient, sso_provider, sso_subject"

// Mapping says which attributes of an entry make a roster user. It is what
// --ldap-mapping turns into; see [ParseMapping].
type Mapping struct {
	// Name is the preset this mapping starts from ("ldap", "ad"), or "".
	Name string
	// fields[t] are alternatives, the first non-empty one winning; each
	// names attributes whose values are joined with a space.
	fields [numTargets][][]string
	// filter is the search filter used when the query gives none.
	filter string
	// disabled: leave out entries whose userAccountControl has
	// ACCOUNTDISABLE (Active Directory).
	disabled bool
}

// uacDisabled is ACCOUNTDISABLE, bit 2 (value 2) of userAccountControl.
const uacDisabled = 0x2

var presets = map[string]Mapping{
	// OpenLDAP, 389-ds, FreeIPA and most directories: inetOrgPerson.
	"ldap": {
		Name: "ldap",
		fields: [numTargets][][]string{
			tLocalpart:   {{"uid"}},
			tDisplayName: {{"displayName"}, {"cn"}},
			tEmail:       {{"mail"}},
		},
		filter: "(objectClass=inetOrgPerson)",
	},
	// Active Directory (and Samba AD): the pre-Windows 2000 logon name,
	// which AD stores with the capitals people typed; the roster lowercases
	// it. Disabled accounts are not on the roster.
	"ad": {
		Name: "ad",
		fields: [numTargets][][]string{
			tLocalpart:   {{"sAMAccountName"}},
			tDisplayName: {{"displayName"}, {"cn"}},
			tEmail:       {{"mail"}},
		},
		filter:   "(&(objectCategory=person)(objectClass=user))",
		disabled: true,
	},
}

var presetAliases = map[string]string{
	"openldap": "ldap", "inetorgperson": "ldap", "389ds": "ldap", "freeipa": "ldap",
	"activedirectory": "ad", "active-directory": "ad", "samba": "ad",
}

const mappingHint = "use --ldap-mapping ldap or ad, optionally followed by changes (ad,sso_subject=objectGUID), or a mapping such as localpart=uid,displayname=displayName|cn,email=mail"

// ParseMapping reads --ldap-mapping: a preset (ldap, ad), a preset followed
// by changes ("ad,sso_subject=objectGUID"), or a whole mapping
// ("localpart=uid,displayname=displayName|cn,email=mail"). "" is the ldap
// preset.
//
// Keys are roster columns (localpart, displayname, email, admin, user_type,
// recipient) and sso_provider and sso_subject; values are attribute names,
// joined with "+" (displayname=givenName+sn) and with alternatives after
// "|", the first non-empty one winning. Only the first value of a
// multi-valued attribute is read. A localpart taken from mail or
// userPrincipalName is the part before the "@". objectGUID is read as
// Active Directory's binary GUID and written in its canonical form
// (c0b2bc9a-...). password and rooms cannot be mapped: a directory holds no
// password provision could use, and rooms come from groups (see
// [RoomsMap]).
func ParseMapping(spec string) (*Mapping, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		spec = "ldap"
	}
	var m Mapping
	parts := strings.Split(spec, ",")
	first := strings.ToLower(strings.TrimSpace(parts[0]))
	if !strings.Contains(first, "=") {
		if a, ok := presetAliases[first]; ok {
			first = a
		}
		p, ok := presets[first]
		if !ok {
			return nil, fmt.Errorf("--ldap-mapping %s: no such preset — %s", quote(parts[0]), mappingHint)
		}
		m = p
		for t := range m.fields {
			m.fields[t] = slices.Clone(m.fields[t])
		}
		parts = parts[1:]
	} else {
		m.filter = "(objectClass=*)"
	}
	seen := map[target]bool{}
	for _, pair := range parts {
		key, val, ok := strings.Cut(pair, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		if !ok || key == "" || strings.TrimSpace(val) == "" {
			return nil, fmt.Errorf("--ldap-mapping: %s is not KEY=ATTRIBUTE — write it as localpart=uid,displayname=cn,email=mail", quote(strings.TrimSpace(pair)))
		}
		switch key {
		case "password":
			return nil, fmt.Errorf("--ldap-mapping: password cannot be mapped — a directory holds password hashes at best; leave it out and provision generates passwords (or binds the account to SSO with sso_subject)")
		case "rooms":
			return nil, fmt.Errorf("--ldap-mapping: rooms cannot be mapped — rooms come from group membership: give a rooms map with --ldap-rooms (see docs/ldap.md)")
		}
		t, known := targetNames[key]
		if !known {
			return nil, fmt.Errorf("--ldap-mapping: unknown key %s — the keys are %s", quote(key), mappingKeys)
		}
		if seen[t] {
			return nil, fmt.Errorf("--ldap-mapping: %s is mapped twice — map each key once; use | for alternatives", quote(key))
		}
		seen[t] = true
		m.fields[t] = nil
		for _, alt := range strings.Split(val, "|") {
			var src []string
			for _, a := range strings.Split(alt, "+") {
				a = strings.TrimSpace(a)
				if !validAttr(a) {
					return nil, fmt.Errorf("--ldap-mapping: %s=%s: %s is not an attribute name — write names such as uid, displayName, mail; + joins, | gives alternatives", key, strings.TrimSpace(val), quote(a))
				}
				src = append(src, a)
			}
			m.fields[t] = append(m.fields[t], src)
		}
	}
	if m.fields[tLocalpart] == nil {
		return nil, fmt.Errorf("--ldap-mapping: the mapping has no localpart — add one, e.g. localpart=uid (OpenLDAP) or localpart=sAMAccountName (Active Directory)")
	}
	if m.fields[tSSOProvider] != nil && m.fields[tSSOSubject] == nil {
		return nil, fmt.Errorf("--ldap-mapping: sso_provider without sso_subject — map sso_subject to the attribute that identifies the person at the identity provider, e.g. sso_subject=entryUUID")
	}
	return &m, nil
}

// validAttr accepts attribute descriptions: a name or OID, with options
// (";binary"), as RFC 4512 has them.
func validAttr(a string) bool {
	if a == "" {
		return false
	}
	for _, c := range a {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ';') {
			return false
		}
	}
	return true
}

// String is the mapping as --ldap-mapping takes it.
func (m *Mapping) String() string {
	var parts []string
	for t := range numTargets {
		if len(m.fields[t]) == 0 {
			continue
		}
		var alts []string
		for _, s := range m.fields[t] {
			alts = append(alts, strings.Join(s, "+"))
		}
		parts = append(parts, column[t]+"="+strings.Join(alts, "|"))
	}
	return strings.Join(parts, ",")
}

// attributes are those to ask the server for.
func (m *Mapping) attributes() []string {
	var out []string
	add := func(a string) {
		if !slices.ContainsFunc(out, func(b string) bool { return strings.EqualFold(a, b) }) {
			out = append(out, a)
		}
	}
	for _, alts := range m.fields {
		for _, src := range alts {
			for _, a := range src {
				add(a)
			}
		}
	}
	if m.disabled {
		add("userAccountControl")
	}
	return out
}

// isDisabled reads Active Directory's userAccountControl. A value that is
// not a number is not taken as "disabled": the entry is then validated, and
// a roster problem is more useful than a silent absence.
func (m *Mapping) isDisabled(e *ldap.Entry) bool {
	if !m.disabled {
		return false
	}
	v := e.GetEqualFoldAttributeValue("userAccountControl")
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	return err == nil && n&uacDisabled != 0
}

// value is what an entry gives for a target, and the attributes it came
// from; ok is false when every alternative is empty or absent.
func (m *Mapping) value(e *ldap.Entry, t target) (val, source string, ok bool) {
	alts := m.fields[t]
	for _, src := range alts {
		var parts []string
		for _, a := range src {
			if s := attrValue(e, a, t == tLocalpart); s != "" {
				parts = append(parts, s)
			}
		}
		if len(parts) > 0 {
			return strings.Join(parts, " "), strings.Join(src, "+"), true
		}
	}
	if len(alts) > 0 {
		return "", strings.Join(alts[0], "+"), false
	}
	return "", "", false
}

// attrValue is the first value of an attribute as text.
func attrValue(e *ldap.Entry, attr string, localpart bool) string {
	raw := e.GetEqualFoldRawAttributeValue(attr)
	if len(raw) == 0 {
		return ""
	}
	if strings.EqualFold(attr, "objectGUID") && len(raw) == 16 {
		return formatGUID(raw)
	}
	s := strings.TrimSpace(string(raw))
	if !utf8.ValidString(s) {
		// Binary data: the roster then refuses it as invalid UTF-8.
		return s
	}
	if localpart && (strings.EqualFold(attr, "mail") || strings.EqualFold(attr, "userPrincipalName")) {
		if i := strings.LastIndexByte(s, '@'); i > 0 {
			s = s[:i]
		}
	}
	return s
}

// formatGUID writes a Microsoft GUID in its canonical form. The first three
// groups are stored little-endian, the last two as bytes: 00 01 02 ... 0f is
// 03020100-0504-0706-0809-0a0b0c0d0e0f, as AD's tools show it.
func formatGUID(b []byte) string {
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15])
}
