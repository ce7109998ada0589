package roster

import (
	"encoding/csv"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Mapping says where, in a CSV exported from another identity system, each
// roster column comes from. It is what --columns google|entra|okta|MAPPING
// turns into; see [ParseColumns]. A nil *Mapping means the roster uses
// provision's own column names.
//
// With a mapping, the localpart is always derived (see [DeriveLocalpart]):
// exports hold email addresses and sign-in names, not Matrix localparts.
// Columns of the export that the mapping does not name are ignored, since
// exports carry dozens of them (phone numbers, departments, ...).
type Mapping struct {
	// Name is the preset's name ("google", "entra", "okta"), or "" for an
	// explicit mapping.
	Name string
	// fields[c] are the alternatives for roster column c: the first whose
	// value is not empty is used. Each alternative names one or more export
	// columns whose values are joined with a space (first and last name).
	fields [numColumns][]source
	// required are the columns a preset cannot do without; an explicit
	// mapping requires every column it names.
	required []string
}

// source is one alternative: export column names, matched as described at
// [ParseColumns], whose values are joined with a space.
type source []string

// The presets. Each export's own column names are given in the form the
// header matching of [ParseColumns] reduces them to, so that the bracketed
// decorations of Google's ("First Name [Required]") and Entra's
// ("Name [displayName] Required") headers do not matter.
var presets = map[string]*Mapping{
	// Google Workspace: Admin console > Directory > Users > Download users
	// (or the bulk-upload template). Its Password column is masked or is a
	// Google password; it is never used. It has no SSO subject: Google's
	// OIDC sub is a number that the admin console's CSV does not hold (its
	// Employee ID is the organisation's own), so --sso-provider needs an
	// explicit mapping with sso_subject.
	"google": {
		Name: "google",
		fields: [numColumns][]source{
			colLocalpart:   {{"email address"}},
			colDisplayName: {{"first name", "last name"}},
			colEmail:       {{"email address"}},
		},
		required: []string{"email address"},
	},
	// Microsoft Entra ID: Users > Bulk operations > Bulk create (the
	// template with a "version:v1.0" first line) or Download users, whose
	// headers are the bare property names. The bulk-create template has no
	// mail column: the email is then left empty rather than guessed from the
	// UPN, which is often not a deliverable address (@tenant.onmicrosoft.com).
	// The SSO subject is the user's object ID ("Object ID", objectId, or id
	// as Microsoft Graph calls it), which Entra's tokens carry as the oid
	// claim; Entra's own sub is different for every application and is in
	// no export. The bulk-create template has no object ID: its users do
	// not exist yet.
	"entra": {
		Name: "entra",
		fields: [numColumns][]source{
			colLocalpart:   {{"userprincipalname"}},
			colDisplayName: {{"displayname"}, {"givenname", "surname"}},
			colEmail:       {{"mail"}},
			colSSOSubject:  {{"objectid"}, {"object id"}, {"id"}},
		},
		required: []string{"userprincipalname"},
	},
	// Okta: the CSV import template and user exports (profile attribute
	// names). Okta's userType is an HR category, not a Matrix user_type.
	// The SSO subject is the user's id (00u...), which is the sub claim of
	// Okta's OIDC tokens; the import template has none.
	"okta": {
		Name: "okta",
		fields: [numColumns][]source{
			colLocalpart:   {{"login"}, {"email"}},
			colDisplayName: {{"displayname"}, {"firstname", "lastname"}},
			colEmail:       {{"email"}},
			colSSOSubject:  {{"id"}, {"user id"}},
		},
		required: []string{"login"},
	},
}

// presetAliases are other names people use for the presets.
var presetAliases = map[string]string{
	"google-workspace": "google", "gsuite": "google", "workspace": "google",
	"azure": "entra", "azuread": "entra", "azure-ad": "entra", "entra-id": "entra", "entraid": "entra",
}

// presetTitles name the systems in messages.
var presetTitles = map[string]string{
	"google": "a Google Workspace export",
	"entra":  "a Microsoft Entra ID (Azure AD) export",
	"okta":   "an Okta export",
}

const columnsHint = "use --columns google, entra or okta, or a mapping such as localpart=uid,displayname=cn,email=mail"

// ParseColumns reads the value of --columns: the name of a preset (google,
// entra, okta) or an explicit mapping "localpart=uid,displayname=cn,...".
// It returns nil for "".
//
// In a mapping the keys are roster columns (localpart, displayname, email,
// admin, user_type, password, rooms, recipient, sso_provider, sso_subject)
// and the values are the export's column names. A value may join columns with "+"
// (displayname=givenName+sn) and give alternatives with "|", the first
// non-empty one winning (displayname=displayName|givenName+sn). localpart is
// required.
//
// An export column name matches a header cell, ignoring case and surrounding
// spaces, when it equals the whole cell, the cell without its bracketed parts
// and a trailing "Required" ("First Name [Required]" is "first name"), or
// the text inside the brackets ("Name [displayName] Required" is
// "displayname"). A name cannot contain ",", "=", "+" or "|".
func ParseColumns(spec string) (*Mapping, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, nil
	}
	name := strings.ToLower(spec)
	if a, ok := presetAliases[name]; ok {
		name = a
	}
	if p, ok := presets[name]; ok {
		return p, nil
	}
	if !strings.Contains(spec, "=") {
		return nil, fmt.Errorf("--columns %s: no such preset — %s", quoteShort(spec), columnsHint)
	}
	m := &Mapping{}
	seen := map[column]string{}
	for _, pair := range strings.Split(spec, ",") {
		key, val, ok := strings.Cut(pair, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		if !ok || key == "" || strings.TrimSpace(val) == "" {
			return nil, fmt.Errorf("--columns: %s is not COLUMN=EXPORT-COLUMN — write it as localpart=uid,displayname=cn,email=mail", quoteShort(strings.TrimSpace(pair)))
		}
		c, known := columnNames[key]
		if !known {
			return nil, fmt.Errorf("--columns: unknown roster column %s — %s", quoteShort(key), unknownHint(suggestColumn(key), "columns"))
		}
		if prev, dup := seen[c]; dup {
			return nil, fmt.Errorf("--columns: %s is mapped twice (also as %s) — map each roster column once; use | for alternatives", quoteShort(key), quoteShort(prev))
		}
		seen[c] = key
		for _, alt := range strings.Split(val, "|") {
			var src source
			for _, part := range strings.Split(alt, "+") {
				part = matchName(part)
				if part == "" {
					return nil, fmt.Errorf("--columns: %s=%s names an empty column — check the + and | in it", key, strings.TrimSpace(val))
				}
				src = append(src, part)
				if !slices.Contains(m.required, part) {
					m.required = append(m.required, part)
				}
			}
			m.fields[c] = append(m.fields[c], src)
		}
	}
	if m.fields[colLocalpart] == nil {
		return nil, fmt.Errorf("--columns: the mapping has no localpart — add one, e.g. localpart=uid or localpart=mail (the part before the @ is used)")
	}
	return m, nil
}

// String is the mapping as --columns takes it.
func (m *Mapping) String() string {
	if m == nil {
		return ""
	}
	if m.Name != "" {
		return m.Name
	}
	var parts []string
	for c := range numColumns {
		if len(m.fields[c]) == 0 {
			continue
		}
		var alts []string
		for _, s := range m.fields[c] {
			alts = append(alts, strings.Join(s, "+"))
		}
		parts = append(parts, columnName(c)+"="+strings.Join(alts, "|"))
	}
	return strings.Join(parts, ",")
}

// columnName is the canonical name of a roster column.
func columnName(c column) string {
	for _, n := range strings.Split(knownColumns, ", ") {
		if columnNames[n] == c {
			return n
		}
	}
	return "?"
}

// matchName reduces a column name to the form names are compared in.
func matchName(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// headerKeys are the names a header cell answers to, most specific first:
// the whole cell, the text in its brackets, and the cell without its
// brackets and without a trailing "required".
func headerKeys(cell string) []string {
	full := matchName(cell)
	keys := []string{full}
	var bare strings.Builder
	rest := full
	for {
		open := strings.IndexByte(rest, '[')
		if open < 0 {
			bare.WriteString(rest)
			break
		}
		end := strings.IndexByte(rest[open:], ']')
		if end < 0 {
			bare.WriteString(rest)
			break
		}
		bare.WriteString(rest[:open])
		if in := strings.TrimSpace(rest[open+1 : open+end]); in != "" {
			keys = append(keys, in)
		}
		rest = rest[open+end+1:]
	}
	b := strings.TrimSpace(bare.String())
	b = strings.TrimSpace(strings.TrimSuffix(b, "required"))
	if b != "" && b != full {
		keys = append(keys, b)
	}
	return keys
}

// presetColumns is a header read through a Mapping.
type presetColumns struct {
	m        *Mapping
	fields   [numColumns][][]int // for each roster column, the usable alternatives as header indexes
	override int                 // index of a "localpart" column in a preset's export, or -1
}

// presetHeader resolves the mapping's column names against the header row.
func (r *run) presetHeader(rec []string, line int, cr *csv.Reader) *header {
	m := r.opts.Columns
	h := &header{n: len(rec), localpart: -1, preset: &presetColumns{m: m, override: -1}}
	// index: name → header index; a name that two cells answer to is
	// ambiguous and resolved by the more specific key, then the first cell.
	type hit struct{ index, rank int }
	index := map[string]hit{}
	for i, cell := range rec {
		for rank, k := range headerKeys(cell) {
			if prev, ok := index[k]; !ok || rank < prev.rank {
				index[k] = hit{i, rank}
			}
		}
		if m.Name != "" && matchName(cell) == "localpart" {
			h.preset.override = i
		}
	}
	var missing []string
	for _, name := range m.required {
		if _, ok := index[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		what := "the mapping given with --columns"
		if m.Name != "" {
			what = presetTitles[m.Name]
		}
		hint := fmt.Sprintf("is this %s? The header names %s", what, quoteShort(strings.Join(rec, ",")))
		if d := detectExport(rec); d != "" && d != m.Name {
			if d == "provision" {
				hint = "this roster already uses provision's own columns: leave out --columns"
			} else {
				hint = fmt.Sprintf("this looks like %s: use --columns %s", presetTitles[d], d)
			}
		}
		quoted := make([]string, len(missing))
		for i, n := range missing {
			quoted[i] = quoteShort(n)
		}
		r.problem(line, 1, fmt.Sprintf("the header has no column %s", strings.Join(quoted, ", ")), hint)
		return h
	}
	for c := range numColumns {
		for _, alt := range m.fields[c] {
			idx := make([]int, 0, len(alt))
			for _, name := range alt {
				if x, ok := index[name]; ok {
					idx = append(idx, x.index)
				}
			}
			if len(idx) == len(alt) {
				h.preset.fields[c] = append(h.preset.fields[c], idx)
			}
		}
	}
	h.localpart = h.preset.fields[colLocalpart][0][0]
	if r.opts.SSOProvider != "" && h.preset.fields[colSSOSubject] == nil {
		r.problem(line, 1, "--sso-provider is given, but "+m.subjectless(), m.subjectHint())
	}
	return h
}

// subjectless says, after "but", that a header has no subject to bind.
func (m *Mapping) subjectless() string {
	switch {
	case m.Name == "google":
		return "a Google Workspace export holds no SSO subject (Google's sub is not in the admin console's CSV)"
	case m.Name != "" && m.fields[colSSOSubject] != nil:
		names := make([]string, 0, len(m.fields[colSSOSubject]))
		for _, alt := range m.fields[colSSOSubject] {
			names = append(names, quoteShort(strings.Join(alt, "+")))
		}
		return fmt.Sprintf("this export has no column %s with the subject", strings.Join(names, " or "))
	case m.Name != "":
		return presetTitles[m.Name] + " holds no SSO subject"
	}
	return "the mapping has no sso_subject"
}

// subjectHint says how to give each person a subject.
func (m *Mapping) subjectHint() string {
	switch m.Name {
	case "entra":
		return "download the users (Users > Download users: it has the object ID) rather than the bulk-create template, or leave out --sso-provider for password accounts"
	case "okta":
		return "export the users with their id (00u...), or leave out --sso-provider for password accounts"
	}
	return "map sso_subject to the column holding each person's ID at the provider (--columns ...,sso_subject=COLUMN), or leave out --sso-provider for password accounts"
}

// presetEntry fills an entry from a row of an export.
func (r *run) presetEntry(e *entry, rec []string, h *header, cr *csv.Reader) {
	p := h.preset
	for c := range numColumns {
		v, ok := pick(rec, p.fields[c], cr)
		if !ok {
			continue
		}
		switch {
		case c == colLocalpart:
			continue // below
		case c == colSSOSubject && p.m.Name != "" && r.opts.SSOProvider == "":
			// A preset reads the subject only for --sso-provider: an export
			// that has one makes password accounts without it, as before.
			continue
		case c == colRooms:
			e.rooms = splitRooms(v)
		default:
			e.fields[c] = v
		}
	}

	if p.override >= 0 && strings.TrimSpace(rec[p.override]) != "" {
		// The operator named this user's localpart: it is checked, not derived.
		line, col := cr.FieldPos(p.override)
		e.fields[colLocalpart] = value{text: rec[p.override], line: line, col: col, set: true}
		return
	}
	v, ok := pick(rec, p.fields[colLocalpart], cr)
	src := strings.TrimSpace(v.text)
	if !ok || src == "" {
		line, col := cr.FieldPos(p.fields[colLocalpart][0][0])
		r.problem(line, col, fmt.Sprintf("no %s for this user, so no localpart", p.m.localpartSource()),
			"fill it in, or remove the line")
		e.localpartTypo = true
		return
	}
	if r.reported(v) {
		e.localpartTypo = true
		return
	}
	lp := DeriveLocalpart(src)
	if lp == "" {
		r.problem(v.line, v.col, fmt.Sprintf("cannot make a localpart from %s: it has no latin letters or digits", quoteShort(src)),
			p.m.overrideHint())
		e.localpartTypo = true
		return
	}
	v.text = lp
	e.fields[colLocalpart] = v
	e.derivedFrom = localOf(src)
}

// pick returns the first alternative whose value is not empty, positioned at
// its first column; ok is false when the column is not mapped or all its
// alternatives are empty.
func pick(rec []string, alts [][]int, cr *csv.Reader) (value, bool) {
	for _, idx := range alts {
		var parts []string
		for _, i := range idx {
			if s := strings.TrimSpace(rec[i]); s != "" {
				parts = append(parts, s)
			}
		}
		if len(parts) == 0 {
			continue
		}
		line, col := cr.FieldPos(idx[0])
		return value{text: strings.Join(parts, " "), line: line, col: col, set: true}, true
	}
	return value{}, false
}

// localpartSource names where a mapping takes localparts from, for messages.
func (m *Mapping) localpartSource() string {
	switch m.Name {
	case "google":
		return "email address"
	case "entra":
		return "user principal name"
	case "okta":
		return "login"
	}
	return strings.Join(m.fields[colLocalpart][0], "+")
}

// overrideHint says how to give one user a localpart of their own.
func (m *Mapping) overrideHint() string {
	if m.Name == "" {
		return "map localpart to a column that holds names the server accepts"
	}
	return `add a column named "localpart" to the export and give this user one there (an empty cell keeps the derived localpart)`
}

// localOf is the part of an address before its last "@", or all of it.
func localOf(s string) string {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return s[:i]
	}
	return s
}

// foldLetters spell the letters that Unicode does not decompose into a base
// letter and an accent.
var foldLetters = map[rune]string{
	'ß': "ss", 'æ': "ae", 'œ': "oe", 'ø': "o", 'đ': "d", 'ð': "d",
	'ł': "l", 'þ': "th", 'ı': "i", 'ħ': "h", 'ŧ': "t", 'ŋ': "n",
}

// DeriveLocalpart makes a localpart from an email address, a user principal
// name or a login, the same way every time:
//
//  1. the part before the last "@" is taken ("Jose.Nunez@example.org" →
//     "Jose.Nunez"); a value without "@" is taken whole;
//  2. accents are removed (Unicode NFKD, then combining marks dropped:
//     "é" → "e", "ñ" → "n", "ü" → "u" — not "ue") and letters without a
//     decomposition are spelt out: ß → ss, æ → ae, œ → oe, ø → o, đ ð → d,
//     ł → l, þ → th, ı → i, ħ → h, ŧ → t, ŋ → n;
//  3. everything is lowercased;
//  4. apostrophes and quotes (' ’ ‘ ʼ ` ´ ") are dropped: "o'brien" → "obrien";
//  5. a-z, 0-9 and . _ = - / + are kept; every run of any other character
//     (spaces, other symbols, letters of other scripts) becomes one "-";
//  6. "-", "." and "_" are trimmed from both ends.
//
// The result is "" when nothing is left; it may still be invalid in the ways
// [Check] reports (all digits, too long).
func DeriveLocalpart(s string) string {
	s = norm.NFKD.String(localOf(strings.TrimSpace(s)))
	var b strings.Builder
	dash := false
	for _, c := range s {
		if unicode.Is(unicode.Mn, c) {
			continue
		}
		c = unicode.ToLower(c)
		if f, ok := foldLetters[c]; ok {
			b.WriteString(f)
			dash = false
			continue
		}
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9',
			c == '.', c == '_', c == '=', c == '-', c == '/', c == '+':
			b.WriteRune(c)
			dash = c == '-'
		case strings.ContainsRune("'’‘ʼ`´\"", c):
		default:
			if !dash {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	return strings.Trim(b.String(), "-._")
}

// isVersionLine tells the "version:v1.0" line that starts an Entra ID
// bulk-operation file.
func isVersionLine(rec []string) bool {
	return len(rec) >= 1 && strings.HasPrefix(matchName(rec[0]), "version:") && blank(rec[1:])
}

// detectExport guesses which system a header row comes from: a preset's
// name, "provision" for provision's own columns, or "".
func detectExport(rec []string) string {
	if isVersionLine(rec) {
		return "entra"
	}
	keys := map[string]bool{}
	for _, cell := range rec {
		for _, k := range headerKeys(cell) {
			keys[k] = true
		}
	}
	switch {
	case keys["localpart"] || keys["username"]:
		return "provision"
	case keys["email address"] && (keys["first name"] || keys["last name"]):
		return "google"
	case keys["userprincipalname"]:
		return "entra"
	case keys["login"] && (keys["firstname"] || keys["lastname"]):
		return "okta"
	}
	return ""
}
