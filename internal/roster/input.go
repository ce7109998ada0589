package roster

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
)

// maxLine bounds a line, and maxRecord a CSV record spread over several
// lines. A roster line is a few hundred bytes; a megabyte means a stray quote
// or a file that is not a roster.
const (
	maxLine   = 1 << 20
	maxRecord = 1 << 20
)

// input sits between the roster file and the parser. It hands out the file
// one line per Read, which keeps the parser's buffer from reading ahead past
// the line it is on; so when encoding/csv returns a record, input has given
// it exactly the lines of that record, and the problems input finds in them
// belong to that record. On the way it
//   - drops a UTF-8 byte order mark and refuses UTF-16 and ZIP files,
//   - stops at a line longer than maxLine, holding no more than maxLine bytes,
//   - reports invalid UTF-8 and NUL bytes (and, for YAML, the control
//     characters YAML forbids) with their line and column,
//   - for CSV, keeps the raw bytes of the current record, to bound its size
//     and to find where an unclosed quote was opened.
type input struct {
	src     *bufio.Reader
	run     *run
	yaml    bool
	line    int    // the line being handed out, 1-based
	pending []byte // the rest of that line
	err     error  // returned once pending is empty

	keepRaw   bool   // CSV: track records
	atStart   bool   // the next non-empty line starts a record
	raw       []byte // the current record's lines as read
	rawLine   int    // the line raw starts on
	rawTooBig bool   // the record went over maxRecord
}

func newInput(src io.Reader, r *run, yaml bool) *input {
	return &input{
		src:     bufio.NewReaderSize(src, maxLine),
		run:     r,
		yaml:    yaml,
		keepRaw: !yaml,
		atStart: true,
	}
}

// startRecord tells input that the parser has consumed a whole record.
func (in *input) startRecord() {
	in.atStart = true
}

func (in *input) Read(p []byte) (int, error) {
	if len(in.pending) == 0 {
		if in.err != nil {
			return 0, in.err
		}
		if err := in.next(); err != nil {
			in.err = err
			if len(in.pending) == 0 {
				return 0, err
			}
		}
	}
	n := copy(p, in.pending)
	in.pending = in.pending[n:]
	return n, nil
}

// next reads the next line into pending. An error it returns is to be
// returned after pending has been handed out.
func (in *input) next() error {
	line, err := in.src.ReadSlice('\n')
	switch err {
	case nil, io.EOF:
	case bufio.ErrBufferFull:
		in.line++
		in.run.problem(in.line, 1, "the line is longer than 1 MiB",
			"a roster line holds one user and is far shorter: is this file a roster?")
		return errStop
	default:
		return fmt.Errorf("read %s: %w", in.run.file, err)
	}
	if len(line) == 0 {
		return err
	}
	in.line++
	if in.line == 1 {
		if stop := in.first(&line); stop {
			return errStop
		}
	}
	in.check(line)
	if in.keepRaw {
		if in.atStart && len(line) > 0 && line[0] != '\n' && !bytes.Equal(line, []byte("\r\n")) {
			in.atStart = false
			in.raw = in.raw[:0]
			in.rawLine = in.line
		}
		if !in.atStart {
			if len(in.raw)+len(line) > maxRecord {
				in.rawTooBig = true
				return errStop
			}
			in.raw = append(in.raw, line...)
		}
	}
	in.pending = line
	return err
}

// first looks at the first line: it drops a UTF-8 byte order mark, and
// refuses the encodings and file types people save rosters in by mistake.
func (in *input) first(line *[]byte) (stop bool) {
	l := *line
	switch {
	case bytes.HasPrefix(l, []byte("\xef\xbb\xbf")):
		*line = l[3:]
	case bytes.HasPrefix(l, []byte("\xff\xfe")), bytes.HasPrefix(l, []byte("\xfe\xff")):
		in.run.problem(1, 1, "the roster is encoded in UTF-16",
			`save it as UTF-8 (in a spreadsheet: "CSV UTF-8")`)
		return true
	case bytes.HasPrefix(l, []byte("PK\x03\x04")):
		in.run.problem(1, 1, "the roster is a ZIP archive, perhaps an .xlsx or .ods spreadsheet",
			`export it from the spreadsheet as "CSV UTF-8"`)
		return true
	}
	// Lines ended by a lone CR (classic Mac OS) would make the file one
	// line, and every position in it wrong.
	if i := bytes.IndexByte(l, '\r'); i >= 0 && i+1 < len(l) && l[i+1] != '\n' {
		in.run.problem(1, i+1, "the lines end with a lone carriage return (CR), as in old Mac files",
			"save the roster with LF or CRLF line endings")
		return true
	}
	return false
}

// check reports the first byte on a line that is not UTF-8 text.
func (in *input) check(line []byte) {
	if in.yaml {
		if plainASCII(line) {
			return
		}
	} else if utf8.Valid(line) && bytes.IndexByte(line, 0) < 0 {
		return
	}
	for i := 0; i < len(line); {
		c, size := utf8.DecodeRune(line[i:])
		switch {
		case c == 0:
			in.run.problem(in.line, i+1, "NUL byte",
				`a roster is a UTF-8 text file: is this one UTF-16, or a spreadsheet? Export it as "CSV UTF-8"`)
			return
		case c == utf8.RuneError && size == 1:
			in.run.problem(in.line, i+1, fmt.Sprintf("invalid UTF-8 (byte 0x%02X)", line[i]),
				"save the roster as UTF-8; this looks like another encoding, such as Latin-1 or Windows-1252")
			return
		case in.yaml && !yamlPrintable(c):
			in.run.problem(in.line, i+1, fmt.Sprintf("control character U+%04X is not allowed in YAML", c),
				`remove it, or write it as an escape inside a double-quoted string ("\t")`)
			return
		}
		i += size
	}
}

// plainASCII reports whether a line has only printable ASCII and line
// endings, the common case, checked faster than rune by rune.
func plainASCII(line []byte) bool {
	for _, c := range line {
		if (c < 0x20 || c > 0x7e) && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// yamlPrintable mirrors the YAML 1.2 "c-printable" production, which
// go.yaml.in/yaml/v3 enforces without saying where.
func yamlPrintable(c rune) bool {
	return c == 0x09 || c == 0x0A || c == 0x0D ||
		(c >= 0x20 && c <= 0x7E) || c == 0x85 ||
		(c >= 0xA0 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD) ||
		(c >= 0x10000 && c <= 0x10FFFF)
}

// unclosedQuote finds the quote that opens a CSV field left open at the end
// of the record in raw, which starts on line; ok is false when no field is
// left open. It follows encoding/csv's rules with TrimLeadingSpace: a quote
// opens a field only at its start, and "" inside a quoted field is a quote.
func unclosedQuote(raw []byte, line int) (qline, qcol int, ok bool) {
	col := 1
	inQuote, fieldStart := false, true
	for i := 0; i < len(raw); {
		c, size := utf8.DecodeRune(raw[i:])
		switch {
		case inQuote:
			if c == '"' {
				if i+1 < len(raw) && raw[i+1] == '"' {
					i++
					col++
				} else {
					inQuote = false
				}
			}
		case fieldStart && c == '"':
			inQuote, fieldStart = true, false
			qline, qcol = line, col
		case c == ',' || c == '\n':
			fieldStart = true
		case fieldStart && unicode.IsSpace(c):
		default:
			fieldStart = false
		}
		if c == '\n' {
			line++
			col = 1
		} else {
			col += size
		}
		i += size
	}
	return qline, qcol, inQuote
}
