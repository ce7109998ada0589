package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var rows = []Row{
	{Localpart: "alice", UserID: "@alice:example.org", Status: Created, Attempts: 1},
	{Localpart: "bob", UserID: "@bob:example.org", Status: Exists, Attempts: 1},
	{Localpart: "=cmd", UserID: "@=cmd:example.org", Status: Failed, Errcode: "M_INVALID_USERNAME", Error: "-2+3 bad", Attempts: 1},
	{Localpart: "carol", Status: Skipped, Error: "dry run: would be created"},
}

func TestCSV(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, err := New(&buf, CSV)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(recs[0], ","); got != "localpart,user_id,status,errcode,error,attempts" {
		t.Errorf("header %q", got)
	}
	if len(recs) != len(rows)+1 {
		t.Fatalf("%d records, want %d", len(recs), len(rows)+1)
	}
	want := []string{"'=cmd", "@=cmd:example.org", "failed", "M_INVALID_USERNAME", "'-2+3 bad", "1"}
	if got := recs[3]; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("formula row = %q, want %q", got, want)
	}
	if recs[1][2] != "created" || recs[1][5] != "1" {
		t.Errorf("row 1 = %q", recs[1])
	}
}

func TestCSVEmptyHasHeader(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, _ := New(&buf, CSV)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "localpart,user_id,status,errcode,error,attempts\n" {
		t.Errorf("empty report = %q", buf.String())
	}
}

func TestJSON(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, len(rows)} {
		var buf bytes.Buffer
		w, _ := New(&buf, JSON)
		for _, r := range rows[:n] {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		var got []map[string]any
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatalf("%d rows: invalid JSON %q: %v", n, buf.String(), err)
		}
		if len(got) != n {
			t.Fatalf("%d rows decoded, want %d", len(got), n)
		}
		for i, obj := range got {
			if len(obj) != 6 {
				t.Errorf("row %d has keys %v, want the 6 report keys", i, obj)
			}
			// JSON needs no formula escaping: values are data, not cells.
			if obj["localpart"] != rows[i].Localpart {
				t.Errorf("row %d localpart %v", i, obj["localpart"])
			}
		}
	}
}

func TestEscapeCell(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"":          "",
		"alice":     "alice",
		"=1+1":      "'=1+1",
		"+1":        "'+1",
		"-1":        "'-1",
		"@SUM(A1)":  "'@SUM(A1)",
		"\tx":       "'\tx",
		"\rx":       "'\rx",
		"a=b":       "a=b",
		"M_UNKNOWN": "M_UNKNOWN",
	}
	for in, want := range cases {
		if got := EscapeCell(in); got != want {
			t.Errorf("EscapeCell(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFormatFor(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]Format{"-": CSV, "r.csv": CSV, "R.JSON": JSON} {
		if got, err := FormatFor(name); err != nil || got != want {
			t.Errorf("FormatFor(%q) = %q, %v", name, got, err)
		}
	}
	if _, err := FormatFor("r.txt"); err == nil {
		t.Error("r.txt accepted")
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewSummary(start)
	for _, r := range rows {
		s.Add(r)
	}
	s.Finished = start.Add(2 * time.Second)
	want := "4 users: 1 created, 1 exists, 1 skipped, 1 failed in 2s (2.0 users/s)"
	if got := s.String(); got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	s.Finished = start.Add(3 * time.Millisecond)
	if got := s.String(); strings.Contains(got, "users/s") {
		t.Errorf("a 3 ms run shows a rate: %q", got)
	}
}

func BenchmarkCSVRow(b *testing.B) {
	w, _ := New(discard{}, CSV)
	r := rows[0]
	b.ReportAllocs()
	for b.Loop() {
		_ = w.Write(r)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
