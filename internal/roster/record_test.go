package roster

import (
	"errors"
	"strings"
	"testing"
)

// Records apply the file rules, and problems name the record and the source.
func TestRecords(t *testing.T) {
	t.Parallel()
	rs, err := NewRecords(Options{ServerName: "example.org"}, func(seq int) string { return "at entry-" + string(rune('0'+seq)) })
	if err != nil {
		t.Fatal(err)
	}
	u, ok := rs.Add(Record{Location: "uid=Alice,dc=x", Fields: []Field{
		{Column: "localpart", Source: "uid", Value: "Alice"},
		{Column: "displayname", Source: "cn", Value: " Alice A "},
		{Column: "rooms", Source: "memberOf", Value: "#a:example.org"},
		{Column: "rooms", Source: "memberOf", Value: "!b:example.org"},
	}})
	if !ok || u.Localpart != "alice" || u.Original != "Alice" || u.DisplayName != "Alice A" || len(u.Rooms) != 2 || u.Line != 1 {
		t.Fatalf("Add = %+v, %v", u, ok)
	}
	if _, ok := rs.Add(Record{Location: "uid=Bob Smith,dc=x", Fields: []Field{
		{Column: "localpart", Source: "uid", Value: "Bob Smith"},
		{Column: "email", Source: "mail", Value: "bob"},
	}}); ok {
		t.Error("an invalid record was accepted")
	}
	if _, ok := rs.Add(Record{Location: "uid=alice,ou=other", Fields: []Field{{Column: "localpart", Source: "uid", Value: "alice"}}}); ok {
		t.Error("a duplicate was accepted")
	}
	rs.Problem("uid=carol,dc=x", "entryUUID", "no value", "fill it in")
	var errs *Errors
	if !errors.As(rs.Err(), &errs) || errs.Total != 4 {
		t.Fatalf("Err = %v; want 4 problems", rs.Err())
	}
	want := []string{
		`uid=Bob Smith,dc=x: uid: "Bob Smith" is not a valid localpart: space at position 4 — use only a-z, 0-9 and . _ = - / +`,
		`uid=Bob Smith,dc=x: mail: "bob" is not an email address: it has no "@" — write it as name@example.org, or leave it empty`,
		`uid=alice,ou=other: uid: duplicate localpart "alice": already at entry-1`,
		`uid=carol,dc=x: entryUUID: no value — fill it in`,
	}
	for i, w := range want {
		if got := errs.Problems[i].String(); !strings.HasPrefix(got, w) {
			t.Errorf("problem %d = %s\nwant %s", i+1, got, w)
		}
	}
	if st := rs.Stats(); st.Users != 1 || st.Lowercased != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestCheckRoom(t *testing.T) {
	t.Parallel()
	for room, bad := range map[string]bool{"#a:x": false, "!id:x": false, "a": true, "#a": true, "": true, "#a,b:x": true} {
		if msg, _ := CheckRoom(room); (msg != "") != bad {
			t.Errorf("CheckRoom(%q) = %q; want bad=%v", room, msg, bad)
		}
	}
}
