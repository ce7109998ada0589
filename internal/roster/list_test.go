package roster

import (
	"bytes"
	"testing"
)

func TestListWriter(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	lw := NewListWriter(&b)
	if err := lw.Write(User{Line: 2, Localpart: "ann", DisplayName: "=cmd()", Email: "ann@example.org", Admin: true, Original: "Ann"}); err != nil {
		t.Fatal(err)
	}
	if err := lw.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "line,localpart,displayname,email,admin,note\n2,ann,'=cmd(),ann@example.org,true,from Ann\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
