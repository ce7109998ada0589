package sanitize

import "testing"

func TestLine(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"plain text", 0, "plain text"},
		{"two\nlines\r\tand a tab", 0, "two lines  and a tab"},
		{"\x1b[31mred\x1b[0m", 0, "?[31mred?[0m"},
		{"nul\x00byte", 0, "nul?byte"},
		{"bad \xff utf8", 0, "bad ? utf8"},
		{"a real \uFFFD stays", 0, "a real \uFFFD stays"},
		{"abcdef", 3, "abc…"},
		{"  padded  ", 0, "padded"},
		{"@mallory:evil.example\n=cmd|' /C calc'!A0", 0, "@mallory:evil.example =cmd|' /C calc'!A0"},
	} {
		if got := Line(c.in, c.max); got != c.want {
			t.Errorf("Line(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
	}
}

func TestPrintable(t *testing.T) {
	t.Parallel()
	if !Printable("@alice:example.org") || Printable("@a\nb:x") || Printable(" x") {
		t.Error("Printable disagrees with Line")
	}
}

func FuzzLine(f *testing.F) {
	f.Add("hello\x1b[2J", 5)
	f.Fuzz(func(t *testing.T, s string, max int) {
		out := Line(s, max)
		if !Printable(out) && out != "" {
			t.Fatalf("Line(%q) = %q is not printable", s, out)
		}
	})
}
