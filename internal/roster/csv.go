package roster

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

func (r *run) readCSV(src io.Reader) error {
	in := newInput(src, r, false)
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = -1 // counted here, to say which line and how
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true

	var cols *header
	rows := 0
	for {
		in.startRecord()
		before := r.errs.Total
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			if pe, ok := errors.AsType[*csv.ParseError](err); ok {
				if r.csvSyntax(pe, in) || cols == nil {
					return errStop // without a header, the rows cannot be read
				}
				rows++
				continue
			}
			if err == errStop && in.rawTooBig {
				r.recordTooBig(in)
			}
			return err
		}
		if blank(rec) {
			if r.stopAtFirst && r.errs.Total > 0 {
				return errStop // a bad byte on a blank line
			}
			continue
		}
		if cols == nil {
			line, _ := cr.FieldPos(0)
			if r.opts.Columns != nil {
				if isVersionLine(rec) {
					continue // Entra ID's bulk files start with "version:v1.0"
				}
				cols = r.presetHeader(rec, line, cr)
			} else {
				cols = r.header(rec, line, cr)
			}
			if cols.localpart < 0 || (r.stopAtFirst && r.errs.Total > 0) {
				return errStop // without localparts, the rows cannot be read
			}
			continue
		}
		rows++
		if len(rec) != cols.n {
			line, col := cr.FieldPos(0)
			hint := "add the missing values; an empty one is fine (alice,,)"
			if len(rec) > cols.n {
				_, col = cr.FieldPos(cols.n)
				hint = `quote a value that contains a comma ("Smith, Bob")`
			}
			if r.problem(line, col, fmt.Sprintf("%d values, but the header names %d columns", len(rec), cols.n), hint) {
				return errStop
			}
			continue
		}
		u := entry{col: 1}
		u.line, _ = cr.FieldPos(0)
		if cols.preset != nil {
			r.presetEntry(&u, rec, cols, cr)
			if r.accept(&u, before) {
				return errStop
			}
			continue
		}
		for i, c := range cols.byIndex {
			if c < 0 {
				continue
			}
			line, col := cr.FieldPos(i)
			v := value{text: rec[i], line: line, col: col, set: true}
			if c == colRooms {
				u.rooms = splitRooms(v)
			} else {
				u.fields[c] = v
			}
		}
		if r.accept(&u, before) {
			return errStop
		}
	}
	if cols == nil {
		r.problem(1, 1, "the roster is empty",
			"start it with a header line, such as localpart,displayname,email,admin, and add one line per user")
	} else if rows == 0 {
		r.problem(1, 1, "the roster has a header but no users", "add one line per user below the header")
	}
	return nil
}

// blank reports whether a record has no content: a line of spaces, or a row
// of empty cells as spreadsheets export them.
func blank(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// csvSyntax turns encoding/csv's complaint into a problem that says how to
// fix the quoting.
func (r *run) csvSyntax(pe *csv.ParseError, in *input) bool {
	switch {
	case errors.Is(pe.Err, csv.ErrBareQuote):
		return r.problem(pe.Line, pe.Column, `a quote (") inside a value that does not start with one`,
			`quote the whole value and double the quotes inside it: "say ""hi"""`)
	case errors.Is(pe.Err, csv.ErrQuote):
		if line, col, open := unclosedQuote(in.raw, in.rawLine); open {
			return r.problem(line, col, "this quote is never closed: the value runs on to the end of the file",
				`close it with a quote ("); a quote inside a quoted value is written twice ("")`)
		}
		return r.problem(pe.Line, pe.Column, "text after the closing quote of a quoted value",
			`put the whole value inside the quotes, and write a quote inside it twice: "say ""hi"" now"`)
	}
	return r.problem(pe.Line, pe.Column, pe.Err.Error(), "")
}

// recordTooBig reports a record that ran over maxRecord; only an open quote
// carries a CSV record over several lines, so that is where to point.
func (r *run) recordTooBig(in *input) {
	if line, col, open := unclosedQuote(in.raw, in.rawLine); open {
		r.problem(line, col, "this quote is not closed within 1 MiB",
			`close it with a quote ("); a quote inside a quoted value is written twice ("")`)
		return
	}
	r.problem(in.rawLine, 1, "the record starting on this line is longer than 1 MiB",
		"a roster record holds one user and is far shorter: is this file a roster?")
}

// header reads the header row.
type header struct {
	n         int
	byIndex   []column       // the column at each index, or -1 for an unknown one
	localpart int            // the index of the localpart column, or -1
	preset    *presetColumns // the export's columns when read with --columns, else nil
}

func (r *run) header(rec []string, line int, cr *csv.Reader) *header {
	h := &header{n: len(rec), byIndex: make([]column, len(rec)), localpart: -1}
	first := make(map[column]int) // column → index
	type unknownName struct {
		col, index int
		name, hint string
	}
	var unknown []unknownName
	known := 0
	for i, raw := range rec {
		h.byIndex[i] = -1
		_, col := cr.FieldPos(i)
		name := strings.ToLower(strings.TrimSpace(raw))
		if name == "" {
			r.problem(line, col, fmt.Sprintf("column %d has no name", i+1),
				"name it ("+knownColumns+") or remove the extra comma")
			continue
		}
		c, ok := columnNames[name]
		if !ok {
			unknown = append(unknown, unknownName{col, i, name, suggestColumn(name)})
			continue
		}
		known++
		if j, dup := first[c]; dup {
			_, jcol := cr.FieldPos(j)
			r.problem(line, col, fmt.Sprintf("column %q appears twice (also column %d, at %d:%d)", name, j+1, line, jcol),
				"remove one of them")
			continue
		}
		first[c] = i
		h.byIndex[i] = c
		if c == colLocalpart {
			h.localpart = i
		}
	}
	// A first line with nothing recognisable is data, not a mistyped header:
	// one problem says so better than one per cell.
	noHints := true
	for _, u := range unknown {
		if u.hint != "" {
			noHints = false
		}
	}
	if d := detectExport(rec); d != "" && d != "provision" {
		// An export from another system: one problem that says how to read
		// it beats one per unknown column.
		r.problem(line, 1, "this is "+presetTitles[d]+", not a roster in provision's columns",
			"read it as it is with --columns "+d)
		return h
	}
	if known == 0 && noHints && len(unknown) > 0 {
		r.problem(line, 1, "the first line is not a header: it names no known column",
			"start the file with a header line naming the columns, such as localpart,displayname,email,admin")
		return h
	}
	for _, u := range unknown {
		r.problem(line, u.col, "unknown column "+quoteShort(u.name), unknownHint(u.hint, "columns"))
	}
	if h.localpart < 0 {
		r.problem(line, 1, "the header has no localpart column",
			`add a column named "localpart" (or "username") holding each user's name`)
	}
	if _, ok := first[colSSOSubject]; !ok && r.opts.SSOProvider != "" {
		r.problem(line, 1, "--sso-provider is given, but the header has no sso_subject column",
			"add an sso_subject column with each person's ID at the provider, or leave out --sso-provider")
	}
	return h
}
