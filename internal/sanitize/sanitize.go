// Package sanitize makes text that came from outside (a server's error message, a
// user ID it answered, a directory attribute) safe to show on a terminal or to write
// into a report, a credentials file or a welcome note: it is the one place where
// control characters, escape sequences and invalid UTF-8 are neutralised.
package sanitize

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line keeps at most max runes of s (max <= 0: no limit) and makes it one printable
// line: newlines and tabs become spaces, other control characters (an ESC that would
// drive the terminal, a NUL) and invalid UTF-8 become '?', and the result is trimmed.
func Line(s string, max int) string {
	clean := true
	for i, r := range s {
		if r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD") || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean && (max <= 0 || utf8.RuneCountInString(s) <= max) {
		return strings.TrimSpace(s)
	}
	var b strings.Builder
	n := 0
	for i, r := range s {
		if max > 0 && n == max {
			b.WriteString("…")
			break
		}
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			b.WriteRune('?')
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteRune(' ')
		case !unicode.IsPrint(r):
			b.WriteRune('?')
		default:
			b.WriteRune(r)
		}
		n++
	}
	return strings.TrimSpace(b.String())
}

// Printable reports whether s is already one printable line with no spaces at its
// ends: what Line(s, 0) would return unchanged.
func Printable(s string) bool { return Line(s, 0) == s }

// Visible is Line for a table a person reads: instead of '?', a control character
// shows as its \uXXXX escape, so that what the server sent can still be told (an
// ESC that would have cleared the screen reads \u001b[2J), and s is cut at max runes
// (max <= 0: no limit). It is not trimmed.
func Visible(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, c := range s {
		if max > 0 && n == max {
			b.WriteString("…")
			break
		}
		n++
		switch {
		case c == '\n' || c == '\r' || c == '\t':
			b.WriteByte(' ')
		case unicode.IsControl(c) || c == utf8.RuneError || (!unicode.IsPrint(c) && !unicode.IsSpace(c)):
			fmt.Fprintf(&b, "\\u%04x", c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}
