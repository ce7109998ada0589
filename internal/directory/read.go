package directory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"github.com/provision-matrix/provision/internal/roster"
)

// Person is one user read from the directory: the roster user (with its
// SSO binding, User.SSOProvider and User.SSOSubject, when the mapping gives
// one) and the entry's DN.
type Person struct {
	roster.User        // Line is the entry's position in the search, from 1
	DN          string //
}

// Stats describe a search.
type Stats struct {
	Entries    int // entries the search returned
	Users      int // valid users, kept for the run
	Lowercased int // users whose localpart the directory holds with capitals
	Disabled   int // entries left out as disabled accounts (AD's ACCOUNTDISABLE)
	WithRooms  int // users given at least one room by the rooms map
	Referrals  int // search references (other partitions) not followed
	Pages      int // pages the server sent
}

// Result is a search that passed validation: its statistics, and its people
// kept for the run. Close it when done.
type Result struct {
	stats Stats
	spool *spool
}

// Stats are the search's statistics. Compare Users with the last run's to
// refuse "far fewer than last time" before anyone is deactivated.
func (r *Result) Stats() Stats { return r.stats }

// Each calls fn with each person, in the order the directory sent them,
// as often as the caller likes: always the same people, those validated. It
// stops when fn returns an error, and returns that error.
func (r *Result) Each(fn func(Person) error) error { return r.spool.each(fn) }

// EachUser is Each for callers that need the roster users only, such as
// batch.Source.
func (r *Result) EachUser(fn func(roster.User) error) error {
	return r.spool.each(func(p Person) error { return fn(p.User) })
}

// Close removes the people kept.
func (r *Result) Close() error { return r.spool.close() }

// dialURL is ldap.DialURL; tests replace it to see that nothing is dialled.
var dialURL = ldap.DialURL

// Read searches the directory once, validates every entry as a roster row,
// and keeps the valid people for the run.
//
// Problems with entries come back together as an *[roster.Errors] naming
// each entry's DN and attribute, as the roster's own problems are printed.
// A search that finds nobody is an [ErrEmptyResult], never an empty roster.
// Failures to connect, to bind or to search are *[Error]s of the kinds
// ErrUnreachable, ErrTLS, ErrBind, ErrSizeLimit; a configuration that would
// send the password in clear is ErrInsecure, refused before any connection.
func Read(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sp, err := newSpool(cfg.SpoolDir)
	if err != nil {
		return nil, err
	}
	res := &Result{spool: sp}
	if err := read(ctx, &cfg, res); err != nil {
		_ = sp.close()
		return nil, err
	}
	return res, nil
}

func read(ctx context.Context, cfg *Config, res *Result) error {
	conn, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Whatever the connection is doing (a bind, a page), cancelling ctx
	// closes it, which ends the request with an error.
	defer context.AfterFunc(ctx, func() { conn.Close() })()

	ropts := cfg.Roster
	ropts.Columns = nil
	// The roster validates the binding and gives mapped sso_subjects
	// without a mapped sso_provider this one.
	ropts.SSOProvider = cfg.SSOProvider
	records, err := roster.NewRecords(ropts, res.spool.locate)
	if err != nil {
		return err
	}
	m := cfg.mapping()
	attrs := m.attributes()
	if cfg.Rooms.Len() > 0 {
		attrs = append(attrs, "memberOf")
	}
	attrs = append(attrs, cfg.Query.Attributes...)
	q := cfg.Query
	req := ldap.NewSearchRequest(q.BaseDN, q.Scope.ldap(), ldap.NeverDerefAliases, 0, 0, false, cfg.filter(), attrs, nil)

	st := &res.stats
	sawMemberOf := false
	handle := func(e *ldap.Entry) error {
		st.Entries++
		if m.isDisabled(e) {
			st.Disabled++
			return nil
		}
		rec := roster.Record{Location: e.DN}
		for t := tLocalpart; t < tSSOProvider; t++ {
			val, src, ok := m.value(e, t)
			if ok || t == tLocalpart && src != "" {
				// The localpart goes in even when absent, so that the
				// problem names the attribute.
				rec.Fields = append(rec.Fields, roster.Field{Column: column[t], Source: src, Value: val})
			}
		}
		var memberOf []string
		if cfg.Rooms.Len() > 0 {
			memberOf = e.GetEqualFoldAttributeValues("memberOf")
			sawMemberOf = sawMemberOf || len(memberOf) > 0
			for _, room := range cfg.Rooms.Rooms(memberOf) {
				rec.Fields = append(rec.Fields, roster.Field{Column: "rooms", Source: "memberOf", Value: room})
			}
		}
		p := Person{DN: e.DN}
		ssoOK := true
		if m.fields[tSSOSubject] != nil {
			var fields []roster.Field
			fields, ssoOK = sso(records, e, m)
			rec.Fields = append(rec.Fields, fields...)
		}
		u, ok := records.Add(rec)
		if !ok || !ssoOK {
			return nil
		}
		p.User = u
		st.Users++
		if u.Original != "" {
			st.Lowercased++
		}
		if len(u.Rooms) > 0 {
			st.WithRooms++
		}
		return res.spool.add(&p)
	}

	// Paged results (RFC 2696) on every search: Active Directory and
	// OpenLDAP with a size limit stop a search that does not ask for pages
	// at 1,000 entries, and a roster cut short would deactivate everyone
	// after the cut. Entries are handled as they arrive, one page at a time.
	paging := ldap.NewControlPaging(uint32(cfg.pageSize()))
	searchCtx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the search goroutine if we stop early
	for {
		req.Controls = []ldap.Control{paging}
		resp := conn.SearchAsync(searchCtx, req, 64)
		var done []ldap.Control
		for resp.Next() {
			if e := resp.Entry(); e != nil {
				if err := handle(e); err != nil {
					return err
				}
				continue
			}
			if resp.Referral() != "" {
				st.Referrals++
			}
			if c := resp.Controls(); len(c) > 0 {
				done = c
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := resp.Err(); err != nil {
			return searchError(q, cfg.pageSize(), err)
		}
		st.Pages++
		pc, _ := ldap.FindControl(done, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if pc == nil || len(pc.Cookie) == 0 {
			// No paging control: a server without paging that sent
			// everything (one that stopped at a limit said so above).
			break
		}
		paging.SetCookie(pc.Cookie)
	}

	if err := records.Err(); err != nil {
		return err
	}
	if st.Users == 0 {
		msg := fmt.Sprintf("the search returned no entries (%s)", q.String())
		if st.Disabled > 0 {
			msg = fmt.Sprintf("the search returned only disabled accounts (%d) (%s)", st.Disabled, q.String())
		}
		return &Error{Kind: ErrEmptyResult, Msg: msg,
			Hint: fmt.Sprintf("check the base DN and the filter %s, and that the service account may read the people; nothing was changed", quote(cfg.filter()))}
	}
	if cfg.Rooms.Len() > 0 && !sawMemberOf {
		return &Error{Kind: ErrNoMemberOf, Msg: fmt.Sprintf("the rooms map names %d groups, but none of the %d entries has a memberOf attribute", cfg.Rooms.Len(), st.Entries),
			Hint: "enable OpenLDAP's memberof overlay (Active Directory has memberOf), check that the service account may read memberOf, or leave out the rooms map; nothing was changed"}
	}
	return res.spool.flush()
}

// sso reads an entry's SSO binding as roster fields, which the roster
// validates like the SSO columns of a file. What only a directory can get
// wrong is reported to records here: a mapping with sso_subject binds
// everyone, so an entry without a value is a problem, not a password
// account.
func sso(records *roster.Records, e *ldap.Entry, m *Mapping) (fields []roster.Field, ok bool) {
	ok = true
	subject, src, found := m.value(e, tSSOSubject)
	if !found {
		records.Problem(e.DN, src, "no value, so the account cannot be bound to single sign-on", "every person needs one: check the attribute, or leave sso_subject out of the mapping")
		ok = false
	} else {
		if !utf8.ValidString(subject) {
			records.Problem(e.DN, src, "binary data, not text", "map sso_subject to a text attribute (entryUUID), or objectGUID on Active Directory")
			return nil, false
		}
		fields = append(fields, roster.Field{Column: "sso_subject", Source: src, Value: subject})
	}
	if m.fields[tSSOProvider] != nil {
		provider, psrc, found := m.value(e, tSSOProvider)
		if !found {
			records.Problem(e.DN, psrc, "no value, so the account cannot be bound to single sign-on", "fill in the attribute, or give one provider for all with --ldap-sso-provider")
			ok = false
		} else {
			fields = append(fields, roster.Field{Column: "sso_provider", Source: psrc, Value: provider})
		}
	}
	if !ok {
		return nil, false
	}
	return fields, true
}

// connect dials, secures and binds.
func connect(ctx context.Context, cfg *Config) (*ldap.Conn, error) {
	q := cfg.Query
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: cfg.timeout()}
	conn, err := dialURL(q.Scheme+"://"+q.hostPort(), ldap.DialWithDialer(d), ldap.DialWithTLSConfig(tlsCfg))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, dialError(q, err)
	}
	conn.SetTimeout(cfg.timeout())
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	fail := func(err error) (*ldap.Conn, error) {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if cfg.StartTLS {
		if err := conn.StartTLS(tlsCfg); err != nil {
			if isTLS(err) {
				return fail(tlsError(q, err))
			}
			var le *ldap.Error
			if errors.As(err, &le) && le.ResultCode != ldap.ErrorNetwork {
				return fail(&Error{Kind: ErrTLS, Msg: q.hostPort() + " refused StartTLS", Cause: err,
					Hint: "the server offers no StartTLS: use ldaps:// (port 636), or configure TLS on the server"})
			}
			return fail(dialError(q, err))
		}
	}
	if cfg.BindDN != "" {
		if err := conn.Bind(cfg.BindDN, string(cfg.BindPassword)); err != nil {
			return fail(bindError(q, cfg.BindDN, err))
		}
	}
	return conn, nil
}
