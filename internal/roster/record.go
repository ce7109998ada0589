package roster

import (
	"fmt"
	"strings"
)

// Record is one user as a source other than a file gives it, such as an
// entry of an LDAP directory: named values, each with the name of what it was
// read from. It is validated by a [Records] exactly as a CSV or YAML row is.
type Record struct {
	// Location names the record in problems, where a file name stands for a
	// file's rows: a directory entry's DN.
	Location string
	Fields   []Field
}

// Field is one value of a [Record].
type Field struct {
	// Column is a roster column, as named in a CSV header: localpart,
	// displayname, email, admin, user_type, password, rooms, recipient,
	// sso_provider or sso_subject. rooms may be given once per room.
	Column string
	// Source names where the value came from, such as an LDAP attribute;
	// problems with the value start with it ("uid: ...").
	Source string
	Value  string
}

// Records validates a stream of [Record]s with the rules and the duplicate
// detection of [Check]. Unlike Check it does not stop at the end of a file:
// the caller adds records one by one and asks for the problems at the end.
//
// A problem's File is the record's Location and its Line and Column are 0,
// so that it prints as "LOCATION: SOURCE: message — hint".
type Records struct {
	r   *run
	seq int
}

// NewRecords returns a validator for records. Of opts it uses ServerName,
// CheckPassword, CheckRecipient and SSOProvider (the provider of records
// with an sso_subject and no sso_provider); a record's values are its own
// columns, so Columns must be nil. locate, when not nil, says where an earlier record
// is, given its sequence number (1 for the first record added), for the
// message about a duplicate localpart: "already " + locate(seq), as in
// "already at uid=alice,ou=people,dc=example,dc=org". Without it the message
// gives the number.
func NewRecords(opts Options, locate func(seq int) string) (*Records, error) {
	if opts.Columns != nil {
		return nil, fmt.Errorf("roster: records take no --columns mapping")
	}
	opts.Checked = false
	if err := checkOptionProvider(&opts); err != nil {
		return nil, err
	}
	r := &run{opts: opts, seen: newSeenSet(false), seenSSO: newSeenSet(false)}
	if locate != nil {
		r.locate = locate
	} else {
		r.locate = func(line int) string { return fmt.Sprintf("in record %d", line) }
	}
	return &Records{r: r}, nil
}

// Add validates a record. When it has no problem, Add returns its user, whose
// Line is the record's sequence number, and true; otherwise the problems are
// kept for [Records.Err] and Add returns false.
func (rs *Records) Add(rec Record) (User, bool) {
	rs.seq++
	r := rs.r
	r.file = rec.Location
	e := entry{line: rs.seq}
	before, kept := r.errs.Total, len(r.errs.Problems)
	for i, f := range rec.Fields {
		// The column number stands for the field, so that the problems
		// found below can be given the field's source.
		v := value{text: f.Value, line: rs.seq, col: i + 1, set: true}
		c, ok := columnNames[strings.ToLower(f.Column)]
		switch {
		case !ok:
			r.problem(rs.seq, i+1, fmt.Sprintf("no roster column %s", quoteShort(f.Column)), unknownHint(suggestColumn(f.Column), "columns"))
		case c == colRooms:
			e.rooms = append(e.rooms, splitRooms(v)...)
		case e.fields[c].set:
			r.problem(rs.seq, i+1, fmt.Sprintf("%s is given twice", columnName(c)), "map each roster column once")
		default:
			e.fields[c] = v
		}
	}
	var user User
	var got bool
	r.emit = func(u User) error {
		user, got = u, true
		return nil
	}
	r.accept(&e, before)
	for i := kept; i < len(r.errs.Problems); i++ {
		p := &r.errs.Problems[i]
		if p.Line == rs.seq && p.Column >= 1 && p.Column <= len(rec.Fields) {
			if src := rec.Fields[p.Column-1].Source; src != "" {
				p.Message = src + ": " + p.Message
			}
		}
		p.Line, p.Column = 0, 0
	}
	return user, got
}

// Err returns the problems found so far as an *[Errors], in the order the
// records were added, or nil when there are none.
func (rs *Records) Err() error {
	if rs.r.errs.Total == 0 {
		return nil
	}
	errs := rs.r.errs
	return &errs
}

// Stats counts the valid records added so far.
func (rs *Records) Stats() Stats { return rs.r.stats }

// CheckRoom checks a room ID or alias as the rooms column does; msg is ""
// when it is valid. Sources that read rooms from somewhere else (a map of
// groups to rooms) check them once, where they are written.
func CheckRoom(room string) (msg, hint string) {
	r := &run{}
	var u User
	r.rooms([]value{{text: room, set: true}}, &u)
	if r.errs.Total == 0 && len(u.Rooms) == 0 {
		return "the room is empty", roomHint
	}
	if r.errs.Total > 0 {
		p := r.errs.Problems[0]
		return p.Message, p.Hint
	}
	return "", ""
}

// CheckSSOProvider checks a single sign-on provider as the sso_provider
// column does (see the package documentation); msg is "" when it is valid.
// Sources that take one provider for everyone from their own flag check it
// once, where it is given, and name that flag.
func CheckSSOProvider(provider string) (msg, hint string) {
	s := strings.TrimSpace(provider)
	if s == "" {
		return "the SSO provider is empty", providerHint
	}
	return checkSSOProvider(s)
}

// at names where an earlier record with the given line is, after "already".
func (r *run) at(line int) string {
	if r.locate != nil {
		return r.locate(line)
	}
	return fmt.Sprintf("on line %d", line)
}

// Problem records a problem that the caller found in a record, with a rule
// of its own (a value the roster has no column for), so that it is listed
// with the others and makes [Records.Err] fail.
func (rs *Records) Problem(location, source, msg, hint string) {
	if source != "" {
		msg = source + ": " + msg
	}
	r := rs.r
	r.file = location
	r.problem(0, 0, msg, hint)
}
