package roster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// maxYAML bounds a YAML roster. YAML is parsed whole into a tree about
// fifteen times the size of the text, so 16 MiB (some 150,000 users) already
// costs a quarter of a gigabyte; larger rosters belong in CSV, which streams.
const maxYAML = 16 << 20

// maxYAMLSearch bounds the documents in which a syntax error's line is
// searched for by re-parsing prefixes (see syntaxLine).
const maxYAMLSearch = 1 << 20

const listHint = `list the users under "users:", one "- localpart: alice" per user`

func (r *run) readYAML(src io.Reader) error {
	in := newInput(src, r, true)
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(in, maxYAML+1))
	if err != nil {
		return err // errStop after a problem, or a read error
	}
	if n > maxYAML {
		r.problem(in.line, 0, "the YAML roster is larger than 16 MiB",
			"convert it to CSV, which is read as a stream and has no such limit")
		return errStop
	}
	if r.errs.Total > 0 {
		return errStop // the YAML parser would only add a vaguer complaint
	}
	y := &yamlFile{run: r, data: buf.Bytes()}
	return y.read()
}

type yamlFile struct {
	run        *run
	data       []byte
	lineStarts []int // byte offset of each line, computed when first needed
}

func (y *yamlFile) read() error {
	r := y.run
	docs, lines, err := decodeYAML(y.data)
	if err != nil {
		y.syntax(err, lines)
		return errStop
	}
	if len(docs) == 0 {
		r.problem(1, 1, "the roster is empty", listHint)
		return errStop
	}
	if len(docs) > 1 {
		line, col := y.pos(docs[1])
		r.problem(line, col, "the roster holds more than one YAML document",
			`put all users in one list, and remove the "---" line that starts another document`)
		return errStop
	}
	users, ok := y.users(docs[0])
	if !ok || (r.stopAtFirst && r.errs.Total > 0) {
		return errStop
	}
	if len(users) == 0 {
		line, col := y.pos(docs[0])
		r.problem(line, col, "the roster has no users", listHint)
		return errStop
	}
	for _, n := range users {
		before := r.errs.Total
		if e := y.entry(n); e != nil {
			if r.accept(e, before) {
				return errStop
			}
		} else if r.stopAtFirst {
			return errStop
		}
	}
	return nil
}

// users finds the list of users in a document: the document itself, or the
// value of its one key "users". ok is false when there is no list to read.
func (y *yamlFile) users(doc *yaml.Node) ([]*yaml.Node, bool) {
	r := y.run
	root := doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, true
		}
		root = root.Content[0]
	}
	line, col := y.pos(root)
	switch root.Kind {
	case yaml.SequenceNode:
		return root.Content, true
	case yaml.AliasNode:
		y.alias(root)
		return nil, false
	case yaml.ScalarNode:
		if isNull(root) {
			r.problem(line, col, "the roster is empty", listHint)
		} else {
			r.problem(line, col, "the roster is a single value, not a list of users",
				listHint)
		}
		return nil, false
	case yaml.MappingNode:
	default:
		r.problem(line, col, "the roster is not a list of users", listHint)
		return nil, false
	}

	var users *yaml.Node
	looksLikeUser := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		name := strings.ToLower(strings.TrimSpace(k.Value))
		if k.Kind == yaml.ScalarNode && name == "users" {
			users = root.Content[i+1]
			break
		}
		if _, ok := columnNames[name]; ok && k.Kind == yaml.ScalarNode {
			looksLikeUser = true
		}
	}
	if users == nil {
		hint := listHint
		if looksLikeUser {
			hint = `a roster is a list: start each user with "- ", as in "- localpart: alice"`
		}
		r.problem(line, col, `the roster is a mapping without a "users" key`, hint)
		return nil, false
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; root.Content[i+1] != users {
			kl, kc := y.pos(k)
			r.problem(kl, kc, "unexpected top-level key "+quoteShort(k.Value),
				`a roster holds only "users:", the list of users`)
		}
	}
	ul, uc := y.pos(users)
	switch {
	case users.Kind == yaml.SequenceNode:
		return users.Content, true
	case users.Kind == yaml.AliasNode:
		y.alias(users)
	case users.Kind == yaml.ScalarNode && isNull(users):
		return nil, true
	default:
		r.problem(ul, uc, `"users" must be a list`,
			`start each user with "- ", as in "- localpart: alice"`)
	}
	return nil, false
}

// entry reads one user's mapping; it returns nil when n is not one. The
// problems it finds with keys are recorded, and accept then sees them.
func (y *yamlFile) entry(n *yaml.Node) *entry {
	r := y.run
	line, col := y.pos(n)
	const hint = `write each user as keys under "- ", as in "- localpart: alice"`
	switch n.Kind {
	case yaml.MappingNode:
	case yaml.AliasNode:
		y.alias(n)
		return nil
	case yaml.ScalarNode:
		if isNull(n) {
			r.problem(line, col, "empty entry in the list of users", `remove the lone "-", or add the user's keys under it`)
		} else {
			r.problem(line, col, "this user is the value "+quoteShort(n.Value)+", not a set of keys", hint)
		}
		return nil
	case yaml.SequenceNode:
		r.problem(line, col, "this user is a list, not a set of keys", hint)
		return nil
	default:
		r.problem(line, col, "this user is not a set of keys", hint)
		return nil
	}

	e := &entry{line: line, col: col}
	var firstKey [numColumns]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kl, kc := y.pos(k)
		if k.Kind == yaml.AliasNode {
			y.alias(k)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			r.problem(kl, kc, "a key must be a name, not a list or a set of keys", "use the keys "+knownColumns)
			continue
		}
		if k.Value == "<<" {
			r.problem(kl, kc, "merge keys (<<) are not allowed in a roster", "write every key out in full for each user")
			continue
		}
		name := strings.ToLower(strings.TrimSpace(k.Value))
		c, known := columnNames[name]
		if !known {
			s := suggestColumn(name)
			if s != "" && columnNames[s] == colLocalpart {
				e.localpartTypo = true // one problem for one typo
			}
			r.problem(kl, kc, "unknown key "+quoteShort(k.Value), unknownHint(s, "keys"))
			continue
		}
		if prev := firstKey[c]; prev != nil {
			pl, _ := y.pos(prev)
			r.problem(kl, kc, fmt.Sprintf("key %q appears twice for this user (also on line %d)", name, pl), "keep only one of them")
			continue
		}
		firstKey[c] = k
		switch {
		case v.Kind == yaml.AliasNode:
			y.alias(v)
			if c == colLocalpart {
				e.localpartTypo = true
			}
		case c == colRooms:
			e.rooms = y.rooms(v)
		default:
			e.fields[c] = y.scalar(v, name)
		}
	}
	return e
}

// scalar reads a value that must be a single text. A list or a mapping is a
// problem, and the value is then marked as set but empty, so that no second
// problem says it is missing.
func (y *yamlFile) scalar(n *yaml.Node, key string) value {
	line, col := y.pos(n)
	if n.Kind != yaml.ScalarNode {
		what := "a list"
		if n.Kind == yaml.MappingNode {
			what = "a set of keys"
		}
		y.run.problem(line, col, fmt.Sprintf("%s must be a single value, not %s", key, what),
			fmt.Sprintf(`write it on one line, as in "%s: ..."`, key))
		return value{line: line, col: col, set: true, bad: true}
	}
	v := value{line: line, col: col, set: true}
	if !isNull(n) {
		v.text = n.Value
	}
	return v
}

// rooms reads "rooms" as a list of rooms or as one text, like the CSV cell.
func (y *yamlFile) rooms(n *yaml.Node) []value {
	switch n.Kind {
	case yaml.ScalarNode:
		return splitRooms(y.scalar(n, "rooms"))
	case yaml.SequenceNode:
		var out []value
		for _, item := range n.Content {
			if item.Kind == yaml.AliasNode {
				y.alias(item)
				continue
			}
			if v := y.scalar(item, "each room"); !v.bad {
				out = append(out, v)
			}
		}
		return out
	}
	line, col := y.pos(n)
	y.run.problem(line, col, "rooms must be a list of rooms, not a set of keys",
		`write them as a list, as in: rooms: ["!id:server", "#alias:server"]`)
	return nil
}

func (y *yamlFile) alias(n *yaml.Node) {
	line, col := y.pos(n)
	y.run.problem(line, col, "YAML aliases (*"+quoteShortBare(n.Value)+") are not allowed in a roster",
		"write the value out in full where it is needed")
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// pos returns a node's line and its column in bytes: the YAML parser counts
// columns in characters, and positions in a roster are in bytes.
func (y *yamlFile) pos(n *yaml.Node) (line, col int) {
	line, col = n.Line, n.Column
	if line < 1 || col < 1 {
		return line, col
	}
	if y.lineStarts == nil {
		y.lineStarts = []int{0}
		for i, c := range y.data {
			if c == '\n' {
				y.lineStarts = append(y.lineStarts, i+1)
			}
		}
	}
	if line > len(y.lineStarts) {
		return line, col // a line break other than \n; keep the parser's count
	}
	text := y.data[y.lineStarts[line-1]:]
	i := 0
	for range col - 1 {
		if i >= len(text) || text[i] == '\n' {
			return line, col
		}
		_, size := utf8.DecodeRune(text[i:])
		i += size
	}
	return line, i + 1
}

// decodeYAML parses at most two documents (a second one is refused anyway)
// and returns, with a syntax error, how many lines the parser had read.
func decodeYAML(data []byte) (docs []*yaml.Node, lines int, err error) {
	feed := &lineFeeder{data: data}
	defer func() {
		// The parser is fed untrusted text; a bug in it must not take the
		// program down.
		if v := recover(); v != nil {
			docs, lines, err = nil, feed.lines, errors.New("yaml: the YAML parser failed on this text")
		}
	}()
	dec := yaml.NewDecoder(feed)
	for len(docs) < 2 {
		var n yaml.Node
		err := dec.Decode(&n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, feed.lines, err
		}
		docs = append(docs, &n)
	}
	return docs, feed.lines, nil
}

// lineFeeder hands the parser one line per Read, so that the lines it has
// read when it fails tell where it failed: the parser's own line numbers
// are those of the enclosing construct, or missing.
type lineFeeder struct {
	data    []byte
	pending []byte
	lines   int
}

func (f *lineFeeder) Read(p []byte) (int, error) {
	if len(f.pending) == 0 {
		if len(f.data) == 0 {
			return 0, io.EOF
		}
		i := bytes.IndexByte(f.data, '\n') + 1
		if i == 0 {
			i = len(f.data)
		}
		f.pending, f.data = f.data[:i], f.data[i:]
		f.lines++
	}
	n := copy(p, f.pending)
	f.pending = f.pending[n:]
	return n, nil
}

var yamlErrorPrefix = regexp.MustCompile(`^yaml: (line \d+: )?`)

// syntax reports a YAML syntax error. The parser has read up to line lines
// when it failed; it looks a line or two ahead, so the prefixes ending just
// before are parsed again to see if they fail the same way. When it failed
// at the end of the text (an unclosed quote or bracket), the shortest prefix
// that fails the same way is where the construct was opened.
func (y *yamlFile) syntax(err error, lines int) {
	msg := yamlErrorPrefix.ReplaceAllString(err.Error(), "")
	line := lines
	if len(y.data) <= maxYAMLSearch && lines > 1 {
		var ends []int
		for i, c := range y.data {
			if c == '\n' {
				ends = append(ends, i+1)
			}
		}
		if len(ends) == 0 || ends[len(ends)-1] != len(y.data) {
			ends = append(ends, len(y.data))
		}
		fails := func(k int) bool {
			_, _, err := decodeYAML(y.data[:ends[k-1]])
			return err != nil && yamlErrorPrefix.ReplaceAllString(err.Error(), "") == msg
		}
		if lines >= len(ends) {
			lo, hi := 1, len(ends)
			for lo < hi {
				if mid := (lo + hi) / 2; fails(mid) {
					hi = mid
				} else {
					lo = mid + 1
				}
			}
			line = lo
		} else {
			for line > 1 && line > lines-2 && fails(line-1) {
				line--
			}
		}
	}
	hint := `check the indentation (spaces, not tabs) and the quoting on this line and the one before; quote a value that contains ": " or starts with a special character`
	if strings.Contains(msg, "anchor") {
		hint = "aliases (*name) are not allowed in a roster: write the value out in full"
	}
	y.run.problem(line, 0, "invalid YAML: "+msg, hint)
}
