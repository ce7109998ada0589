package report

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

func TestWriteSummaryText(t *testing.T) {
	t.Parallel()
	s := NewSummary(time.Unix(0, 0))
	for _, r := range []Row{
		{Localpart: "ann", Status: Created},
		{Localpart: "bob", Status: Created},
		{Localpart: "cy", Status: "odd"},
		{Localpart: "dan", UserID: "@dan:example.org", Status: Failed, Errcode: "M_EXCLUSIVE", Error: "reserved\x1b[2J"},
		{Localpart: "eve", Status: Failed, Error: "timeout"},
	} {
		s.Add(r)
	}
	s.Finished = s.Started.Add(1500 * time.Millisecond)
	failures := []Row{{Localpart: "dan", UserID: "@dan:example.org", Errcode: "M_EXCLUSIVE", Error: "reserved\x1b[2J"}}
	var b bytes.Buffer
	err := WriteSummaryText(&b, s, SummaryOptions{DryRun: true, Failed: 2, Failures: failures,
		Hint: func(r Row) string { return "hint for " + r.Errcode }})
	if err != nil {
		t.Fatal(err)
	}
	want := `
dry run, nothing was changed: 5 users in 1.5s (3.3 users/s):
  created  2  new accounts; their passwords are in the handoff
  failed   2  see below and the report
  odd      1  

2 users failed:
  USER              ERRCODE      MESSAGE
  @dan:example.org  M_EXCLUSIVE  reserved\u001b[2J
                                 hint: hint for M_EXCLUSIVE
  ... and 1 more: see the report
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	attrs := fmt.Sprint(SummaryAttrs(s, SummaryOptions{Failed: 2, Failures: failures}))
	wantAttrs := `[users 5 counts=[created=2 failed=2 odd=1] dry_run false seconds 1.5 failed [{dan @dan:example.org M_EXCLUSIVE reserved` + "\x1b" + `[2J }] failed_not_listed 1]`
	if attrs != wantAttrs {
		t.Errorf("attrs\n%q\nwant\n%q", attrs, wantAttrs)
	}
}
