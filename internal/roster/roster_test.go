package roster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

// want is one expected problem: its exact place, and words that its message
// and hint must contain.
type want struct {
	line, col int
	msg, hint string
}

type badCase struct {
	name   string
	format Format
	input  string
	opts   Options
	want   []want
}

// checkProblems runs Check, and Each, and compares the problems found.
func checkProblems(t *testing.T, tc badCase) {
	t.Helper()
	opts := tc.opts
	opts.Format = tc.format
	file := "roster." + string(tc.format)
	_, err := Check(strings.NewReader(tc.input), file, opts)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Check: got %v, want *Errors", err)
	}
	if errs.Total != len(tc.want) || len(errs.Problems) != len(tc.want) {
		t.Fatalf("Check: got %d problems (Total %d), want %d:\n%v", len(errs.Problems), errs.Total, len(tc.want), err)
	}
	for i, w := range tc.want {
		p := errs.Problems[i]
		if p.File != file || p.Line != w.line || p.Column != w.col {
			t.Errorf("problem %d at %s:%d:%d, want %s:%d:%d: %s", i, p.File, p.Line, p.Column, file, w.line, w.col, p)
		}
		if !strings.Contains(p.Message, w.msg) {
			t.Errorf("problem %d message %q does not contain %q", i, p.Message, w.msg)
		}
		if !strings.Contains(p.Hint, w.hint) {
			t.Errorf("problem %d hint %q does not contain %q", i, p.Hint, w.hint)
		}
	}
	// Each stops at the first problem in file order; every case here has
	// its first problem first in the list.
	err = Each(strings.NewReader(tc.input), file, opts, func(User) error { return nil })
	var eachErrs *Errors
	if !errors.As(err, &eachErrs) || len(eachErrs.Problems) == 0 {
		t.Fatalf("Each: got %v, want *Errors", err)
	}
	if got, first := eachErrs.Problems[0], errs.Problems[0]; got != first {
		t.Errorf("Each stopped at %s\nCheck's first problem is %s", got, first)
	}
}

func TestCSVProblems(t *testing.T) {
	const header = "localpart,displayname,email,admin,user_type,password,rooms,recipient\n"
	tests := []badCase{
		{name: "empty file", input: "",
			want: []want{{1, 1, "the roster is empty", "header line"}}},
		{name: "only blank lines", input: "\n\r\n\n",
			want: []want{{1, 1, "the roster is empty", "header line"}}},
		{name: "header only", input: "localpart,email\n",
			want: []want{{1, 1, "has a header but no users", "one line per user"}}},
		{name: "header and empty rows", input: "localpart,email\n,\n \n",
			want: []want{{1, 1, "has a header but no users", "one line per user"}}},
		{name: "unknown column with suggestion", input: "localpart,emial\nalice,a@example.org\n",
			want: []want{{1, 11, `unknown column "emial"`, `did you mean "email"?`}}},
		{name: "unknown column by synonym", input: "localpart,Full Name\nalice,Alice\n",
			want: []want{{1, 11, `unknown column "full name"`, `did you mean "displayname"?`}}},
		{name: "unknown column without suggestion", input: "localpart,shoe_size\nalice,42\n",
			want: []want{{1, 11, `unknown column "shoe_size"`, "the known columns are localpart, displayname"}}},
		{name: "commented header is an unknown column", input: "#localpart,email\nalice,a@example.org\n",
			want: []want{
				{1, 1, `unknown column "#localpart"`, `did you mean "localpart"?`},
				{1, 1, "no localpart column", `"localpart"`},
			}},
		{name: "no header", input: "alice,Alice Martin,alice@example.org\nbob,Bob,bob@example.org\n",
			want: []want{{1, 1, "the first line is not a header", "localpart,displayname,email,admin"}}},
		{name: "missing localpart column", input: "displayname,email\nAlice,alice@example.org\n",
			want: []want{{1, 1, "no localpart column", `"username"`}}},
		{name: "duplicate column", input: "localpart,email,EMAIL\nalice,a@example.org,b@example.org\n",
			want: []want{{1, 17, `column "email" appears twice (also column 2, at 1:11)`, "remove one"}}},
		{name: "duplicate column through its alias", input: "localpart,username\nalice,bob\n",
			want: []want{{1, 11, `column "username" appears twice (also column 1, at 1:1)`, "remove one"}}},
		{name: "unnamed column", input: "localpart,,email\nalice,,a@example.org\n",
			want: []want{{1, 11, "column 2 has no name", "remove the extra comma"}}},
		{name: "too few fields", input: "localpart,displayname,email\nalice,Alice\nbob,Bob,\n",
			want: []want{{2, 1, "2 values, but the header names 3 columns", "add the missing values"}}},
		{name: "too many fields", input: "localpart,displayname\nalice,Smith, Bob\n",
			want: []want{{2, 14, "3 values, but the header names 2 columns", `quote a value that contains a comma ("Smith, Bob")`}}},
		{name: "unbalanced quote", input: "localpart,displayname\nalice,\"Alice\nbob,Bob\n",
			want: []want{{2, 7, "this quote is never closed", `close it with a quote`}}},
		{name: "text after closing quote", input: "localpart,displayname\nalice,\"Alice\"x\nbob,Bob\n",
			want: []want{{2, 13, "text after the closing quote", `""`}}},
		{name: "bare quote", input: "localpart,displayname\nalice,Al\"ice\nbob,Bob\n",
			want: []want{{2, 9, `a quote (") inside a value`, `quote the whole value`}}},
		{name: "bare quote in the header", input: "local\"part\nalice\n",
			want: []want{{1, 6, `a quote (") inside a value`, `quote the whole value`}}},
		{name: "invalid UTF-8", input: "localpart,displayname\nrenee,Ren\xe9e\nbob,Bob\n",
			want: []want{{2, 10, "invalid UTF-8 (byte 0xE9)", "save the roster as UTF-8"}}},
		{name: "invalid UTF-8 in the localpart", input: "localpart\nren\xe9e\n",
			want: []want{{2, 4, "invalid UTF-8 (byte 0xE9)", "Latin-1"}}},
		{name: "NUL byte", input: "localpart,displayname\nal\x00ice,Alice\n",
			want: []want{{2, 3, "NUL byte", "UTF-8 text file"}}},
		{name: "UTF-16", input: "\xff\xfel\x00o\x00c\x00\n\x00",
			want: []want{{1, 1, "UTF-16", "save it as UTF-8"}}},
		{name: "spreadsheet", input: "PK\x03\x04\x14\x00\x06\x00",
			want: []want{{1, 1, "ZIP archive", "CSV UTF-8"}}},
		{name: "lone CR line endings", input: "localpart,email\ralice,\r",
			want: []want{{1, 16, "lone carriage return (CR)", "LF or CRLF"}}},
		{name: "duplicates differing only by case", input: "localpart\nalice\nbob\nALICE\n",
			want: []want{{4, 1, `duplicate localpart "alice" (written "ALICE"): already on line 2`, "capitals do not count"}}},
		{name: "exact duplicate after a multi-line record", input: "localpart,rooms\nalice,\"!a:hs\n#b:hs\"\nbob,\nalice,\n",
			want: []want{{5, 1, `duplicate localpart "alice": already on line 2`, "remove or rename one"}}},
		{name: "localpart with a space", input: "localpart\nali ce\n",
			want: []want{{2, 1, `"ali ce" is not a valid localpart: space at position 4`, "use only a-z, 0-9 and . _ = - / +"}}},
		{name: "localpart with an accent", input: "displayname,localpart\nJosé,josé\n",
			want: []want{{2, 7, `"josé" is not a valid localpart: "é" at position 4`, "use only a-z"}}},
		{name: "localpart with a tab", input: "localpart\n\"a\tb\"\n",
			want: []want{{2, 1, `"a\tb" is not a valid localpart: tab at position 2`, "use only a-z"}}},
		{name: "full user ID", input: "localpart\n@Alice:example.org\n",
			want: []want{{2, 1, `"@Alice:example.org" is a full user ID`, "write only the localpart: alice"}}},
		{name: "email as localpart", input: "localpart\nalice@example.org\n",
			want: []want{{2, 1, `"alice@example.org" is an email address, not a localpart`, "such as alice"}}},
		{name: "hash line is not a comment", input: "localpart\n# staff\nalice\n",
			want: []want{{2, 1, `"# staff" is not a valid localpart: "#" at position 1`, "not a comment in CSV"}}},
		{name: "empty localpart", input: "localpart,displayname\n,Alice\n",
			want: []want{{2, 1, "the localpart is empty", "every user needs one"}}},
		{name: "underscore", input: "localpart\n_bridge\n",
			want: []want{{2, 1, `"_bridge" starts with _`, "reserved for bridges"}}},
		{name: "all digits", input: "localpart\n007\n",
			want: []want{{2, 1, `"007" is all digits`, "add a letter"}}},
		{name: "user ID too long for the server", input: "localpart\n" + strings.Repeat("a", 240) + "\n",
			opts: Options{ServerName: "matrix.example.org"},
			want: []want{{2, 1, "the user ID @" + strings.Repeat("a", 40) + "…:matrix.example.org would be 260 bytes", "at most 235 characters"}}},
		{name: "localpart too long for any server", input: "localpart\n" + strings.Repeat("a", 253) + "\n",
			want: []want{{2, 1, "is too long: 253 characters", "at most 252"}}},
		{name: "email without at", input: "localpart,email\nalice,alice.example.org\n",
			want: []want{{2, 7, `"alice.example.org" is not an email address: it has no "@"`, "name@example.org"}}},
		{name: "email with two at", input: "localpart,email\nalice,a@b@example.org\n",
			want: []want{{2, 7, `more than one "@"`, "name@example.org"}}},
		{name: "email with a space", input: "localpart,email\nalice,alice smith@example.org\n",
			want: []want{{2, 7, "space at position 6", "or leave it empty"}}},
		{name: "email without domain", input: "localpart,email\nalice,alice@\n",
			want: []want{{2, 7, `something is missing around the "@"`, "name@example.org"}}},
		{name: "admin not a boolean", input: "localpart,admin\nalice,maybe\n",
			want: []want{{2, 7, `admin must be true or false, not "maybe"`, "yes/no, 1/0"}}},
		{name: "room without sigil", input: "localpart,rooms\nalice,general\n",
			want: []want{{2, 7, `room "general" is not a room ID or alias`, "#alias:server"}}},
		{name: "room without server", input: "localpart,rooms\nalice,\"#general !abc:hs\"\n",
			want: []want{{2, 7, `room "#general" has no server name`, "separate rooms with spaces or ;"}}},
		{name: "rooms separated by commas", input: "localpart,rooms\nalice,\"#a:hs,#b:hs\"\n",
			want: []want{{2, 7, `room "#a:hs,#b:hs" contains a comma`, "separate rooms with spaces or ;"}}},
		{name: "user_type with a line break", input: "localpart,user_type\nalice,\"bot\nx\"\nbob,\n",
			want: []want{{2, 7, "the user_type has a line break at position 4", "a plain word"}}},
		{name: "display name with a line break", input: "localpart,displayname\nalice,\"Alice\nMartin\"\n",
			want: []want{{2, 7, "the display name has a line break at position 6", "on one line"}}},
		{name: "display name too long", input: "localpart,displayname\nalice," + strings.Repeat("é", 129) + "\n",
			want: []want{{2, 7, "the display name is 258 bytes long", "at most 256 bytes"}}},
		{name: "password refused by the policy", input: "localpart,password\nalice,hunter2\n",
			opts: Options{CheckPassword: func(string) error { return errors.New("the password is shorter than 12 characters") }},
			want: []want{{2, 7, "the password is shorter than 12 characters", "leave it empty to have one generated"}}},
		{name: "password with a leading space", input: "localpart,password\nalice,\" hunter2\"\n",
			want: []want{{2, 7, "the password begins or ends with white space", "leave the password empty"}}},
		{name: "password with a trailing space", input: "localpart,password\nalice,hunter2 \n",
			want: []want{{2, 7, "the password begins or ends with white space", "leave the password empty"}}},
		{name: "recipient refused", input: "localpart,recipient\nalice,age1nope\n",
			opts: Options{CheckRecipient: func(string) error { return errors.New("malformed age recipient") }},
			want: []want{{2, 7, "malformed age recipient", "age public key (age1...)"}}},
		{name: "every problem in file order", input: header +
			"Alice,Alice,alice@example.org,true,,,,\n" +
			"bob smith,Bob,bob,sure,,,general,\n" +
			"carol,Carol\n" +
			"alice,Alice again,,,,,,\n",
			want: []want{
				{3, 1, `"bob smith" is not a valid localpart`, "use only a-z"},
				{3, 15, `"bob" is not an email address`, "name@example.org"},
				{3, 19, `admin must be true or false, not "sure"`, "true or false"},
				{3, 26, `room "general" is not a room ID or alias`, "!id:server"},
				{4, 1, "2 values, but the header names 8 columns", "add the missing values"},
				{5, 1, `duplicate localpart "alice": already on line 2`, "capitals do not count"},
			}},
	}
	for _, tc := range tests {
		tc.format = FormatCSV
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkProblems(t, tc)
		})
	}
}

func TestYAMLProblems(t *testing.T) {
	tests := []badCase{
		{name: "empty file", input: "",
			want: []want{{1, 1, "the roster is empty", `"users:"`}}},
		{name: "only comments", input: "# nobody yet\n\n",
			want: []want{{1, 1, "the roster is empty", `"users:"`}}},
		{name: "users is empty", input: "users: []\n",
			want: []want{{1, 1, "the roster has no users", `"- localpart: alice"`}}},
		{name: "users is null", input: "# staff\nusers:\n",
			want: []want{{2, 1, "the roster has no users", `"- localpart: alice"`}}},
		{name: "a scalar", input: "alice\n",
			want: []want{{1, 1, "the roster is a single value, not a list of users", `"users:"`}}},
		{name: "a mapping without users", input: "staff:\n  - localpart: alice\n",
			want: []want{{1, 1, `the roster is a mapping without a "users" key`, `"users:"`}}},
		{name: "a single user without a list", input: "localpart: alice\ndisplayname: Alice\n",
			want: []want{{1, 1, `the roster is a mapping without a "users" key`, `start each user with "- "`}}},
		{name: "an extra top-level key", input: "version: 1\nusers:\n  - localpart: alice\n",
			want: []want{{1, 1, `unexpected top-level key "version"`, `only "users:"`}}},
		{name: "users is a mapping", input: "users:\n  alice:\n    displayname: Alice\n",
			want: []want{{2, 3, `"users" must be a list`, `start each user with "- "`}}},
		{name: "a user that is a list", input: "users:\n  - - alice\n    - Alice\n",
			want: []want{{2, 5, "this user is a list, not a set of keys", `"- localpart: alice"`}}},
		{name: "a user that is a name", input: "- alice\n- localpart: bob\n",
			want: []want{{1, 3, `this user is the value "alice", not a set of keys`, `"- localpart: alice"`}}},
		{name: "an empty entry", input: "- localpart: bob\n-\n",
			want: []want{{2, 2, "empty entry in the list of users", `remove the lone "-"`}}},
		{name: "unknown key", input: "- localpart: alice\n  emial: alice@example.org\n",
			want: []want{{2, 3, `unknown key "emial"`, `did you mean "email"?`}}},
		{name: "misspelt localpart key", input: "- locapart: alice\n",
			want: []want{{1, 3, `unknown key "locapart"`, `did you mean "localpart"?`}}},
		{name: "missing localpart", input: "- displayname: Alice\n",
			want: []want{{1, 3, "this user has no localpart", `"localpart: alice"`}}},
		{name: "duplicate key", input: "- localpart: alice\n  email: a@example.org\n  Email: b@example.org\n",
			want: []want{{3, 3, `key "email" appears twice for this user (also on line 2)`, "keep only one"}}},
		{name: "display name as a list", input: "- localpart: alice\n  displayname: [Alice, Martin]\n",
			want: []want{{2, 16, "displayname must be a single value, not a list", "on one line"}}},
		{name: "rooms as a mapping", input: "- localpart: alice\n  rooms: {a: b}\n",
			want: []want{{2, 10, "rooms must be a list of rooms", `["!id:server", "#alias:server"]`}}},
		{name: "alias", input: "users:\n  - localpart: alice\n    rooms: &r [\"#a:hs\"]\n  - localpart: bob\n    rooms: *r\n",
			want: []want{{5, 12, "YAML aliases (*r) are not allowed", "write the value out in full"}}},
		{name: "merge key", input: "- &base {localpart: alice, admin: true}\n- <<: *base\n  localpart: bob\n",
			want: []want{{2, 3, "merge keys (<<) are not allowed", "write every key out in full"}}},
		{name: "undefined alias", input: "users:\n  - localpart: alice\n    rooms: *nothing\n",
			want: []want{{3, 0, "invalid YAML: unknown anchor 'nothing' referenced", "aliases (*name) are not allowed"}}},
		{name: "two documents", input: "- localpart: alice\n---\n- localpart: bob\n",
			want: []want{{2, 1, "more than one YAML document", `"---"`}}},
		{name: "bad indentation", input: "users:\n  - localpart: alice\n    displayname: Alice\n  email: a@example.org\n  - localpart: bob\n",
			want: []want{{4, 0, "invalid YAML: did not find expected '-' indicator", "indentation"}}},
		{name: "tab indentation", input: "users:\n\t- localpart: alice\n",
			want: []want{{2, 0, "invalid YAML: found character that cannot start any token", "spaces, not tabs"}}},
		{name: "unclosed quote", input: "users:\n  - localpart: alice\n    displayname: \"Alice\n  - localpart: bob\n  - localpart: carol\n",
			want: []want{{3, 0, "invalid YAML: found unexpected end of stream", "quoting"}}},
		{name: "colon in a plain value", input: "- localpart: alice\n  displayname: Alice: the boss\n",
			want: []want{{2, 0, "invalid YAML: mapping values are not allowed in this context", `quote a value that contains ": "`}}},
		{name: "control character", input: "- localpart: alice\n  displayname: Al\x01ice\n",
			want: []want{{2, 18, "control character U+0001 is not allowed in YAML", "escape"}}},
		{name: "invalid UTF-8", input: "- localpart: alice\n  displayname: Ren\xe9e\n",
			want: []want{{2, 19, "invalid UTF-8 (byte 0xE9)", "save the roster as UTF-8"}}},
		{name: "NUL through an escape", input: "- localpart: \"al\\0ice\"\n",
			want: []want{{1, 14, `"al\x00ice" is not a valid localpart: control character U+0000 at position 3`, "use only a-z"}}},
		{name: "columns count bytes", input: "- {displayname: Émile, localpart: é}\n",
			want: []want{{1, 36, `"é" is not a valid localpart`, "use only a-z"}}},
		{name: "duplicates differing only by case", input: "- localpart: alice\n- localpart: bob\n- localpart: Alice\n",
			want: []want{{3, 14, `duplicate localpart "alice" (written "Alice"): already on line 1`, "capitals do not count"}}},
		{name: "admin not a boolean", input: "- localpart: alice\n  admin: maybe\n",
			want: []want{{2, 10, `admin must be true or false, not "maybe"`, "yes/no"}}},
		{name: "room in a list", input: "- localpart: alice\n  rooms:\n    - \"#ok:hs\"\n    - general\n",
			want: []want{{4, 7, `room "general" is not a room ID or alias`, "#alias:server"}}},
		{name: "numeric localpart", input: "- localpart: 12345\n",
			want: []want{{1, 14, `"12345" is all digits`, "add a letter"}}},
	}
	for _, tc := range tests {
		tc.format = FormatYAML
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkProblems(t, tc)
		})
	}
}

func TestYAMLBillionLaughs(t *testing.T) {
	t.Parallel()
	// The classic: nine levels of nine aliases would expand to 9⁹ rooms.
	var b strings.Builder
	b.WriteString("users:\n  - localpart: l1\n    rooms: &a [\"#lol:hs\",\"#lol:hs\",\"#lol:hs\",\"#lol:hs\",\"#lol:hs\",\"#lol:hs\",\"#lol:hs\",\"#lol:hs\",\"#lol:hs\"]\n")
	for i := 2; i <= 9; i++ {
		prev := string(rune('a' + i - 2))
		fmt.Fprintf(&b, "  - localpart: l%d\n    rooms: &%c [", i, 'a'+i-1)
		for j := range 9 {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]\n")
	}
	_, err := Check(strings.NewReader(b.String()), "lol.yaml", Options{})
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v, want *Errors", err)
	}
	if errs.Total != 8*9 {
		t.Errorf("got %d problems, want one per alias, 72", errs.Total)
	}
	want := "lol.yaml:5:16: YAML aliases (*a) are not allowed in a roster — write the value out in full where it is needed"
	if got := errs.Problems[0].String(); got != want {
		t.Errorf("first problem:\n got %s\nwant %s", got, want)
	}
}

// aReader yields n bytes of 'a' without holding them, and counts what was read.
type aReader struct {
	n, read int64
}

func (r *aReader) Read(p []byte) (int, error) {
	if r.read >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.read)]
	for i := range p {
		p[i] = 'a'
	}
	r.read += int64(len(p))
	return len(p), nil
}

func TestLongLineFailsFast(t *testing.T) {
	t.Parallel()
	for _, format := range []Format{FormatCSV, FormatYAML} {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			head := "localpart\n"
			if format == FormatYAML {
				head = "users:\n  - localpart: "
			}
			long := &aReader{n: 100 << 20}
			_, err := Check(io.MultiReader(strings.NewReader(head), long), "big."+string(format), Options{})
			want := "big." + string(format) + ":2:1: the line is longer than 1 MiB — a roster line holds one user and is far shorter: is this file a roster?"
			if err == nil || err.Error() != want {
				t.Errorf("got %v\nwant %s", err, want)
			}
			if long.read > 2<<20 {
				t.Errorf("read %d bytes of the long line before failing, want at most 2 MiB", long.read)
			}
		})
	}
}

func TestYAMLSizeLimit(t *testing.T) {
	t.Parallel()
	lines := &lineRepeater{line: []byte("- localpart: a\n"), n: 17 << 20}
	_, err := Check(lines, "big.yaml", Options{})
	errs, ok := errors.AsType[*Errors](err)
	if !ok || len(errs.Problems) != 1 {
		t.Fatalf("got %v", err)
	}
	p := errs.Problems[0]
	if p.Line != (16<<20)/15+1 || p.Message != "the YAML roster is larger than 16 MiB" || !strings.Contains(p.Hint, "convert it to CSV") {
		t.Errorf("got %s", p)
	}
}

func TestOpenQuoteFailsFast(t *testing.T) {
	t.Parallel()
	// A stray quote turns the rest of a big file into one record; it must
	// be refused at 1 MiB, pointing at the quote.
	lines := &lineRepeater{line: []byte("bob,Bob\n"), n: 10 << 20}
	src := io.MultiReader(strings.NewReader("localpart,displayname\nalice,Alice\ncarol,\"Carol\n"), lines)
	_, err := Check(src, "stray.csv", Options{})
	want := `stray.csv:3:7: this quote is not closed within 1 MiB — close it with a quote ("); a quote inside a quoted value is written twice ("")`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if lines.read > 2<<20 {
		t.Errorf("read %d bytes after the quote, want at most 2 MiB", lines.read)
	}
}

type lineRepeater struct {
	line    []byte
	n, read int
}

func (r *lineRepeater) Read(p []byte) (int, error) {
	if r.read >= r.n {
		return 0, io.EOF
	}
	n := 0
	for n+len(r.line) <= len(p) && r.read < r.n {
		n += copy(p[n:], r.line)
		r.read += len(r.line)
	}
	return n, nil
}

func TestCSVGood(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		input string
		want  []User
		stats Stats
	}{
		{
			name:  "BOM and CRLF",
			input: "\xef\xbb\xbflocalpart,displayname\r\nalice,Alice Martin\r\nbob,Bob\r\n",
			want:  []User{{Line: 2, Localpart: "alice", DisplayName: "Alice Martin"}, {Line: 3, Localpart: "bob", DisplayName: "Bob"}},
			stats: Stats{Users: 2},
		},
		{
			name:  "quoted commas, quotes and newlines",
			input: "localpart,displayname,rooms\ngrace,\"Hopper, Grace\",\"!a:hs\r\n#b:hs\"\nolu,\"Oluwaseun \"\"Olu\"\" Adeyemi\",\nbob,Bob,",
			want: []User{
				{Line: 2, Localpart: "grace", DisplayName: "Hopper, Grace", Rooms: []string{"!a:hs", "#b:hs"}},
				{Line: 4, Localpart: "olu", DisplayName: `Oluwaseun "Olu" Adeyemi`},
				{Line: 5, Localpart: "bob", DisplayName: "Bob"},
			},
			stats: Stats{Users: 3},
		},
		{
			name:  "header names in any case, aliases and spaces",
			input: " UserName , Display_Name ,EMAIL\nalice, Alice Martin , alice@example.org \n",
			want:  []User{{Line: 2, Localpart: "alice", DisplayName: "Alice Martin", Email: "alice@example.org"}},
			stats: Stats{Users: 1},
		},
		{
			name:  "blank lines and empty rows are skipped",
			input: "\n\nlocalpart,email\n\nalice,\n,\n  ,  \nbob,\n\n",
			want:  []User{{Line: 5, Localpart: "alice"}, {Line: 8, Localpart: "bob"}},
			stats: Stats{Users: 2},
		},
		{
			name:  "capitals are lowercased",
			input: "localpart\nEva.Schmidt\nbob\n",
			want:  []User{{Line: 2, Localpart: "eva.schmidt", Original: "Eva.Schmidt"}, {Line: 3, Localpart: "bob"}},
			stats: Stats{Users: 2, Lowercased: 1},
		},
		{
			name:  "every column",
			input: "localpart,displayname,email,admin,user_type,password,rooms,recipient\nalice,Alice,alice@example.org,YES,bot,correct horse,#a:hs;!b:hs  #c:hs,age1xyz\n",
			want: []User{{Line: 2, Localpart: "alice", DisplayName: "Alice", Email: "alice@example.org", Admin: true, UserType: "bot",
				Password: "correct horse", Rooms: []string{"#a:hs", "!b:hs", "#c:hs"}, Recipient: "age1xyz"}},
			stats: Stats{Users: 1},
		},
		{
			name:  "admin words",
			input: "localpart,admin\na,true\nb,FALSE\nc,1\nd,0\ne,yes\nf,No\ng,\n",
			want: []User{{Line: 2, Localpart: "a", Admin: true}, {Line: 3, Localpart: "b"}, {Line: 4, Localpart: "c", Admin: true},
				{Line: 5, Localpart: "d"}, {Line: 6, Localpart: "e", Admin: true}, {Line: 7, Localpart: "f"}, {Line: 8, Localpart: "g"}},
			stats: Stats{Users: 7},
		},
		{
			name:  "all the allowed characters",
			input: "localpart\na.b_c=d-e/f+g0\n",
			want:  []User{{Line: 2, Localpart: "a.b_c=d-e/f+g0"}},
			stats: Stats{Users: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			users, stats, err := ReadAll(strings.NewReader(tc.input), "good.csv", Options{ServerName: "example.org"})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(users, tc.want) {
				t.Errorf("got  %+v\nwant %+v", users, tc.want)
			}
			if stats != tc.stats {
				t.Errorf("got stats %+v, want %+v", stats, tc.stats)
			}
			checked, err := Check(strings.NewReader(tc.input), "good.csv", Options{ServerName: "example.org"})
			if err != nil || checked != tc.stats {
				t.Errorf("Check: got %+v, %v; want %+v", checked, err, tc.stats)
			}
		})
	}
}

func TestYAMLGood(t *testing.T) {
	t.Parallel()
	want := []User{
		{Line: 3, Localpart: "alice", DisplayName: "Alice Martin", Email: "alice@example.org", Admin: true, Rooms: []string{"#a:hs", "!b:hs"}},
		{Line: 8, Localpart: "eva", Original: "Eva", Admin: true, Rooms: []string{"#a:hs", "#c:hs"}},
		{Line: 11, Localpart: "bob", DisplayName: "Bob", Password: "s3cret!", UserType: "bot", Recipient: "age1xyz"},
		{Line: 12, Localpart: "carol"},
	}
	tests := []struct{ name, input string }{
		{"users key", `# staff
users:
  - localpart: alice
    displayname: Alice Martin
    email: alice@example.org
    admin: true
    rooms: ["#a:hs", "!b:hs"]
  - LocalPart: Eva
    admin: "yes"
    rooms: "#a:hs; #c:hs"
  - {username: bob, display_name: Bob, password: s3cret!, user_type: bot, recipient: age1xyz, admin: false, email: ~}
  - localpart: carol
    admin: 0
`},
		{"top-level list", `# staff

  - localpart: alice
    displayname: Alice Martin
    email: alice@example.org
    admin: true
    rooms: ["#a:hs", "!b:hs"]
  - LocalPart: Eva
    admin: 1
    rooms: "#a:hs; #c:hs"
  - {username: bob, display_name: Bob, password: s3cret!, user_type: bot, recipient: age1xyz, admin: false, email: ~}
  - localpart: carol
    admin: null
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			users, stats, err := ReadAll(strings.NewReader(tc.input), "good.yaml", Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(users, want) {
				t.Errorf("got  %+v\nwant %+v", users, want)
			}
			if stats != (Stats{Users: 4, Lowercased: 1}) {
				t.Errorf("got stats %+v", stats)
			}
		})
	}
}

func TestEachStreamsInOrderAndStops(t *testing.T) {
	t.Parallel()
	input := "localpart\nalice\nbob\ncarol\nbob\ndave\n"
	var got []string
	err := Each(strings.NewReader(input), "-", Options{Format: FormatCSV}, func(u User) error {
		got = append(got, u.Localpart)
		return nil
	})
	want := `<stdin>:5:1: duplicate localpart "bob": already on line 3 — each user needs a different localpart, and capitals do not count (Alice and alice are the same account): remove or rename one`
	if err == nil || err.Error() != want {
		t.Errorf("got error %v\nwant %s", err, want)
	}
	if !reflect.DeepEqual(got, []string{"alice", "bob", "carol"}) {
		t.Errorf("Each yielded %v, want the users before the duplicate", got)
	}

	stop := errors.New("stop here")
	got = nil
	err = Each(strings.NewReader(input), "r.csv", Options{}, func(u User) error {
		got = append(got, u.Localpart)
		if u.Localpart == "bob" {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Errorf("got %v, want fn's error unchanged", err)
	}
	if !reflect.DeepEqual(got, []string{"alice", "bob"}) {
		t.Errorf("Each yielded %v after fn's error", got)
	}
}

func TestEachYieldsNothingAfterAHeaderProblem(t *testing.T) {
	t.Parallel()
	for _, input := range []string{"localpart,emial\nalice,a@example.org\n", "displayname\nAlice\n"} {
		called := false
		err := Each(strings.NewReader(input), "r.csv", Options{}, func(User) error { called = true; return nil })
		if _, ok := errors.AsType[*Errors](err); !ok || called {
			t.Errorf("%q: got %v, fn called: %v; want *Errors and no call", input, err, called)
		}
	}
}

func TestSecretsStayOut(t *testing.T) {
	t.Parallel()
	const pw = "Tr0ub4dor&3xyzzy"
	input := "localpart,password\n" +
		"alice," + pw + " \n" + // trailing space
		"bob smith," + pw + "\n" + // bad localpart on the same row
		"carol," + pw + ",extra\n" + // wrong field count
		"dave,\"" + pw + "\"x\n" + // text after a quote
		"erin,\"" + pw + "\n" // unclosed quote
	opts := Options{CheckPassword: func(string) error { return errors.New("too weak") }}
	_, err := Check(strings.NewReader(input), "r.csv", opts)
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "Tr0ub") {
		t.Errorf("the password appears in the error:\n%v", err)
	}
}

func TestProblemCap(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("localpart\n")
	for range 1500 {
		b.WriteString("bad name\n")
	}
	_, err := Check(strings.NewReader(b.String()), "r.csv", Options{})
	errs, ok := errors.AsType[*Errors](err)
	if !ok {
		t.Fatalf("got %v", err)
	}
	if len(errs.Problems) != 1000 || errs.Total != 1500 {
		t.Errorf("kept %d of %d problems, want 1000 of 1500", len(errs.Problems), errs.Total)
	}
	text := err.Error()
	if lines := strings.Count(text, "\n") + 1; lines != 1001 {
		t.Errorf("Error() has %d lines, want 1001", lines)
	}
	if !strings.HasSuffix(text, "\n... and 500 more problems") {
		t.Errorf("Error() ends with %q", text[len(text)-40:])
	}
	if !strings.HasPrefix(text, `r.csv:2:1: "bad name" is not a valid localpart: space at position 4 — use only a-z, 0-9 and . _ = - / +`+"\n") {
		t.Errorf("Error() starts with %q", text[:120])
	}
}

func TestProblemString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{"roster.csv", 7, 1, `"ali ce" is not a valid localpart: space at position 4`, "use only a-z, 0-9 and . _ = - / +"},
			`roster.csv:7:1: "ali ce" is not a valid localpart: space at position 4 — use only a-z, 0-9 and . _ = - / +`},
		{Problem{"r.yaml", 3, 0, "invalid YAML: x", "fix it"}, "r.yaml:3: invalid YAML: x — fix it"},
		{Problem{"r.yaml", 0, 0, "too big", ""}, "r.yaml: too big"},
	}
	for _, tc := range tests {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		want    Format
		wantErr string
	}{
		{"roster.csv", FormatCSV, ""},
		{"dir.d/Roster.CSV", FormatCSV, ""},
		{"roster.yaml", FormatYAML, ""},
		{"roster.yml", FormatYAML, ""},
		{"roster.txt", "", "use --format csv or --format yaml"},
		{"roster", "", "use --format csv or --format yaml"},
		{"-", "", "standard input — use --format"},
	}
	for _, tc := range tests {
		got, err := FormatFromName(tc.name)
		if got != tc.want || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("FormatFromName(%q) = %q, %v; want %q, %q", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
	// Check uses the name when Options.Format is empty, and Format wins
	// over the name.
	if st, err := Check(strings.NewReader("- localpart: a\n"), "r.yml", Options{}); err != nil || st.Users != 1 {
		t.Errorf("r.yml: %v %v", st, err)
	}
	if st, err := Check(strings.NewReader("localpart\na\n"), "-", Options{Format: FormatCSV}); err != nil || st.Users != 1 {
		t.Errorf("stdin as CSV: %v %v", st, err)
	}
	if _, err := Check(strings.NewReader(""), "r.csv", Options{Format: "json"}); err == nil || !strings.Contains(err.Error(), `unknown roster format "json"`) {
		t.Errorf("json: %v", err)
	}
}

func TestSamples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file  string
		stats Stats
	}{
		{"../../samples/roster.csv", Stats{Users: 20, Lowercased: 1}},
		{"../../samples/roster.yaml", Stats{Users: 8, Lowercased: 1}},
	} {
		data := readSample(t, tc.file)
		users, stats, err := ReadAll(bytes.NewReader(data), tc.file, Options{ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		if stats != tc.stats {
			t.Errorf("%s: %+v, want %+v", tc.file, stats, tc.stats)
		}
		admins := 0
		for _, u := range users {
			// The demo registers these on Dendrite with the shared secret,
			// which refuses user_type, and they carry no secrets.
			if u.UserType != "" || u.Password != "" || u.Recipient != "" || len(u.Rooms) > 0 {
				t.Errorf("%s:%d: a sample user must have no user_type, password, recipient or rooms", tc.file, u.Line)
			}
			if u.Admin {
				admins++
			}
		}
		if admins != 1 {
			t.Errorf("%s: %d admins, want one", tc.file, admins)
		}
	}
}
