package directory

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"unicode"

	"github.com/go-ldap/ldap/v3"
	"go.yaml.in/yaml/v3"

	"github.com/provision-matrix/provision/internal/roster"
)

// maxRoomsFile bounds the rooms map: a map of groups to rooms is a few
// kilobytes; a megabyte is a mistake.
const maxRoomsFile = 1 << 20

// RoomsMap gives the rooms of the members of groups. A person's rooms are
// the union of the rooms of the groups their memberOf attribute names.
//
// memberOf is read from each person's entry rather than the members from
// each group: the one search that reads the people gives their groups too,
// with no search per group, no Active Directory range retrieval of groups
// with more than 1,500 members, and no list of members held in memory.
// Active Directory keeps memberOf itself; OpenLDAP needs the memberof
// overlay (or, from 2.5, dynlist with memberOf). Groups nested in a group
// are not expanded, and AD's memberOf does not list a user's primary group
// (Domain Users): map the groups people are direct members of.
type RoomsMap struct {
	byDN map[string][]string // normalized group DN → rooms
	byCN map[string][]string // lowercased cn → rooms
}

// LoadRoomsMap reads a rooms map from a YAML file such as
//
//	# group DN or cn: rooms (IDs or aliases, quoted: # starts a YAML comment)
//	cn=staff,ou=groups,dc=example,dc=org: ["#staff:example.org"]
//	engineering:
//	  - "#engineering:example.org"
//	  - "!abcdef:example.org"
//
// A key with "=" is a group's DN, matched whatever its case and spacing;
// any other key is a group's cn, matched in any case against the first part
// of the DNs in memberOf (cn=engineering,ou=... matches "engineering",
// wherever the group is).
func LoadRoomsMap(path string) (*RoomsMap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rooms map: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRoomsFile+1))
	if err != nil {
		return nil, fmt.Errorf("rooms map: %w", err)
	}
	if len(data) > maxRoomsFile {
		return nil, fmt.Errorf("rooms map %s is larger than 1 MiB — it maps groups to rooms and should be a few lines: is it the right file?", path)
	}
	return ParseRoomsMap(data, path)
}

// ParseRoomsMap reads a rooms map (see [LoadRoomsMap]); name is the file's
// name in messages.
func ParseRoomsMap(data []byte, name string) (*RoomsMap, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v — write one line per group: GROUP: [\"#room:example.org\"]", name, err)
	}
	m := &RoomsMap{byDN: map[string][]string{}, byCN: map[string][]string{}}
	if len(doc.Content) == 0 {
		return m, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: the rooms map must be a mapping of groups to rooms — e.g. engineering: [\"#engineering:example.org\"]", name, root.Line)
	}
	var problems []string
	bad := func(n *yaml.Node, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d:%d: ", name, n.Line, n.Column)+fmt.Sprintf(format, args...))
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode || strings.TrimSpace(k.Value) == "" {
			bad(k, "a group must be a DN or a cn — write cn=staff,ou=groups,dc=example,dc=org or staff")
			continue
		}
		var rooms []*yaml.Node
		switch v.Kind {
		case yaml.SequenceNode:
			rooms = v.Content
		case yaml.ScalarNode:
			rooms = []*yaml.Node{v}
		default:
			bad(v, "the rooms of %s must be a list — write [\"#room:example.org\"]", quote(k.Value))
			continue
		}
		var list []string
		for _, r := range rooms {
			if r.Kind != yaml.ScalarNode {
				bad(r, "a room must be a room ID or alias — write \"#room:example.org\" or \"!id:example.org\"")
				continue
			}
			if r.Tag == "!!null" || strings.TrimSpace(r.Value) == "" {
				bad(r, "empty room — did you leave a # unquoted? YAML reads # as a comment: write \"#room:example.org\" in quotes")
				continue
			}
			for _, room := range strings.FieldsFunc(r.Value, func(c rune) bool { return c == ';' || unicode.IsSpace(c) }) {
				if msg, hint := roster.CheckRoom(room); msg != "" {
					bad(r, "%s — %s", msg, hint)
					continue
				}
				list = append(list, room)
			}
		}
		key := strings.TrimSpace(k.Value)
		if strings.Contains(key, "=") {
			dn, err := normalizeDN(key)
			if err != nil {
				bad(k, "%s is not a DN (%v) — write cn=staff,ou=groups,dc=example,dc=org, or just the cn", quote(key), err)
				continue
			}
			if _, dup := m.byDN[dn]; dup {
				bad(k, "group %s is listed twice — list each group once", quote(key))
			}
			m.byDN[dn] = list
		} else {
			cn := strings.ToLower(key)
			if _, dup := m.byCN[cn]; dup {
				bad(k, "group %s is listed twice — list each group once", quote(key))
			}
			m.byCN[cn] = list
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return m, nil
}

// Len is the number of groups in the map.
func (m *RoomsMap) Len() int {
	if m == nil {
		return 0
	}
	return len(m.byDN) + len(m.byCN)
}

// Rooms gives the rooms of a member of the groups named by memberOf DNs,
// each once, in the order the groups and the map list them.
func (m *RoomsMap) Rooms(memberOf []string) []string {
	if m.Len() == 0 {
		return nil
	}
	var out []string
	add := func(rooms []string) {
		for _, r := range rooms {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	for _, g := range memberOf {
		parsed, err := ldap.ParseDN(g)
		if err != nil || len(parsed.RDNs) == 0 {
			continue // not a DN: no group of the map can match it
		}
		if rooms, ok := m.byDN[canonicalDN(parsed)]; ok {
			add(rooms)
		}
		if len(m.byCN) > 0 {
			for _, a := range parsed.RDNs[0].Attributes {
				if strings.EqualFold(a.Type, "cn") {
					add(m.byCN[strings.ToLower(a.Value)])
				}
			}
		}
	}
	return out
}

func normalizeDN(s string) (string, error) {
	dn, err := ldap.ParseDN(s)
	if err != nil {
		return "", err
	}
	return canonicalDN(dn), nil
}

// canonicalDN writes a parsed DN in one form for comparison: types and
// values lowercased (group names are case-insensitive in practice), no
// spaces around separators.
func canonicalDN(dn *ldap.DN) string {
	var b strings.Builder
	for i, rdn := range dn.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range rdn.Attributes {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(strings.ToLower(a.Type))
			b.WriteByte('=')
			b.WriteString(strings.ToLower(a.Value))
		}
	}
	return b.String()
}

// AllRooms is every room the map names, each once, in the map's order of
// groups (DN keys, then cn keys, each sorted): the rooms provision manages,
// and the only ones --leave-dropped-rooms ever makes anyone leave.
func (m *RoomsMap) AllRooms() []string {
	if m.Len() == 0 {
		return nil
	}
	var out []string
	for _, byKey := range []map[string][]string{m.byDN, m.byCN} {
		for _, k := range slices.Sorted(maps.Keys(byKey)) {
			for _, r := range byKey[k] {
				if !slices.Contains(out, r) {
					out = append(out, r)
				}
			}
		}
	}
	return out
}
