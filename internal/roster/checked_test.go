package roster

import (
	"strings"
	"testing"
)

// A roster that passed Check is streamed by Each with Options.Checked without the
// duplicate bookkeeping: every other rule still applies.
func TestEachChecked(t *testing.T) {
	t.Parallel()
	in := "localpart\nalice\nbob\n"
	if _, err := Check(strings.NewReader(in), "team.csv", Options{}); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := Each(strings.NewReader(in), "team.csv", Options{Checked: true}, func(u User) error {
		got = append(got, u.Localpart)
		return nil
	})
	if err != nil || strings.Join(got, ",") != "alice,bob" {
		t.Fatalf("Each: %v, %v", got, err)
	}
	if err := Each(strings.NewReader("localpart\nalice\n_bad\n"), "team.csv", Options{Checked: true}, func(User) error { return nil }); err == nil {
		t.Error("Each with Checked accepted an invalid localpart")
	}
}
