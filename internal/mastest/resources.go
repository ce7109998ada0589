package mastest

import (
	"net/http"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// item is one resource of a list page.
type item struct {
	id    string
	attrs map[string]any
}

// pagination is MAS's page[...] and count parameters
// (crates/handlers/src/admin/params.rs, Pagination).
type pagination struct {
	after, before string
	first, last   int
	count         string // "true", "false" or "only"
	filters       url.Values
}

// parsePagination answers 400 for what params.rs rejects: both page[first]
// and page[last], a cursor that is not a ULID, a count that is not a
// positive number, an unknown count mode.
func parsePagination(w http.ResponseWriter, r *http.Request) (pagination, bool) {
	q := r.URL.Query()
	p := pagination{count: "true", filters: url.Values{}}
	bad := func() (pagination, bool) {
		adminError(w, http.StatusBadRequest, "Invalid pagination parameters")
		return pagination{}, false
	}
	for _, k := range []string{"page[after]", "page[before]"} {
		if v := q.Get(k); v != "" {
			id, ok := parseULID(v)
			if !ok {
				return bad()
			}
			if k == "page[after]" {
				p.after = id
			} else {
				p.before = id
			}
		}
	}
	for _, k := range []string{"page[first]", "page[last]"} {
		if v := q.Get(k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return bad()
			}
			if k == "page[first]" {
				p.first = n
			} else {
				p.last = n
			}
		}
	}
	if p.first > 0 && p.last > 0 {
		adminError(w, http.StatusBadRequest, "Cannot specify both `page[first]` and `page[last]` parameters")
		return pagination{}, false
	}
	if p.first == 0 && p.last == 0 {
		p.first = 10 // DEFAULT_PAGE_SIZE
	}
	if v := q.Get("count"); v != "" {
		if v != "true" && v != "false" && v != "only" {
			return bad()
		}
		p.count = v
	}
	for k, v := range q {
		if strings.HasPrefix(k, "filter[") {
			p.filters[k] = v
		}
	}
	return p, true
}

// write answers a PaginatedResponse (crates/handlers/src/admin/response.rs):
// items in ID order; links.next (the last item's cursor in page[after]) only
// when there is a next page, links.prev only when there is a previous one;
// meta.count unless count=false; each item's meta.page.cursor. base is the
// list's path with its filters.
func (p pagination) write(w http.ResponseWriter, kind, canonical, base string, items []item) {
	total := len(items)
	var sel []item
	for _, it := range items {
		if (p.after == "" || it.id > p.after) && (p.before == "" || it.id < p.before) {
			sel = append(sel, it)
		}
	}
	var hasNext, hasPrev bool
	n := p.first
	if p.last > 0 {
		n = p.last
		if len(sel) > n {
			sel, hasPrev = sel[len(sel)-n:], true
		}
	} else if len(sel) > n {
		sel, hasNext = sel[:n], true
	}
	if q := p.filters.Encode(); q != "" {
		base += "?" + q
	}
	if p.count != "true" {
		base = addQuery(base, "count="+p.count)
	}
	pageURL := func(after, before string, first, last int) string {
		u := base
		if before != "" {
			u = addQuery(u, "page[before]="+before)
		}
		if after != "" {
			u = addQuery(u, "page[after]="+after)
		}
		if last > 0 {
			return addQuery(u, "page[last]="+strconv.Itoa(last))
		}
		return addQuery(u, "page[first]="+strconv.Itoa(first))
	}
	links := map[string]string{
		"self":  pageURL(p.after, p.before, p.first, p.last),
		"first": pageURL("", "", n, 0),
		"last":  pageURL("", "", 0, n),
	}
	if hasNext {
		links["next"] = pageURL(sel[len(sel)-1].id, "", p.first, p.last)
	}
	if hasPrev {
		links["prev"] = pageURL("", sel[0].id, p.first, p.last)
	}
	res := map[string]any{"links": links}
	if p.count != "false" {
		res["meta"] = map[string]int{"count": total}
	}
	if p.count == "only" {
		res["links"] = map[string]string{"self": base}
		writeJSON(w, http.StatusOK, res)
		return
	}
	data := make([]map[string]any, 0, len(sel))
	for _, it := range sel {
		data = append(data, map[string]any{
			"type":       kind,
			"id":         it.id,
			"attributes": it.attrs,
			"links":      map[string]string{"self": canonical + "/" + it.id},
			"meta":       map[string]any{"page": map[string]string{"cursor": it.id}},
		})
	}
	res["data"] = data
	writeJSON(w, http.StatusOK, res)
}

func addQuery(u, kv string) string {
	if strings.Contains(u, "?") {
		return u + "&" + kv
	}
	return u + "?" + kv
}

type email struct {
	id, userID, address string
	createdAt           time.Time
}

func (e *email) attributes() map[string]any {
	return map[string]any{"created_at": e.createdAt, "user_id": e.userID, "email": e.address}
}

const emailsPath = "/api/admin/v1/user-emails"

// addEmail is POST user-emails (crates/handlers/src/admin/v1/user_emails/
// add.rs): the user must exist, the address must parse, and no user may
// have it already (compared case-insensitively by the storage's
// UserEmailFilter::for_email): that includes this user, so adding an
// address twice is a 409 too.
func (s *Server) addEmail(w http.ResponseWriter, r *http.Request) {
	var req struct {
		UserID string `json:"user_id"`
		Email  string `json:"email"`
	}
	if !readJSON(w, r, &req, "user_id", "email") {
		return
	}
	uid, ok := parseULID(req.UserID)
	if !ok {
		plain(w, http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: user_id: invalid ULID")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[uid]; !ok {
		adminError(w, http.StatusNotFound, "User ID "+uid+" not found")
		return
	}
	// MAS parses with lettre::Address; net/mail's bare-address parse is a
	// close stand-in (the cause's title is lettre's wording for the usual
	// failure).
	if a, err := mail.ParseAddress(req.Email); err != nil || a.Address != req.Email || a.Name != "" {
		adminError(w, http.StatusBadRequest, "Email "+rustDebug(req.Email)+" is not valid", "Missing domain or user")
		return
	}
	for _, e := range s.emails {
		if strings.EqualFold(e.address, req.Email) {
			adminError(w, http.StatusConflict, "User email "+rustDebug(req.Email)+" already in use")
			return
		}
	}
	e := &email{id: s.newID(), userID: uid, address: req.Email, createdAt: s.o.Clock().UTC()}
	s.emails[e.id] = e
	single(w, http.StatusCreated, "user-email", emailsPath, e.id, e.attributes(), "")
}

// listEmails is GET user-emails (.../user_emails/list.rs) with
// filter[user] (404 if the user does not exist) and filter[email]
// (case-insensitive).
func (s *Server) listEmails(w http.ResponseWriter, r *http.Request) {
	p, ok := parsePagination(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fu, fe := p.filters.Get("filter[user]"), p.filters.Get("filter[email]")
	if fu != "" {
		id, ok := parseULID(fu)
		if !ok {
			adminError(w, http.StatusBadRequest, "Invalid filter parameters")
			return
		}
		if _, ok := s.users[id]; !ok {
			adminError(w, http.StatusNotFound, "User ID "+id+" not found")
			return
		}
		fu = id
	}
	var items []item
	for _, id := range sortedKeys(s.emails) {
		e := s.emails[id]
		if (fu == "" || e.userID == fu) && (fe == "" || strings.EqualFold(e.address, fe)) {
			items = append(items, item{id: id, attrs: e.attributes()})
		}
	}
	p.write(w, "user-email", emailsPath, emailsPath, items)
}

const providersPath = "/api/admin/v1/upstream-oauth-providers"

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// listProviders is GET upstream-oauth-providers
// (crates/handlers/src/admin/v1/upstream_oauth_providers/list.rs) with
// filter[enabled]; attributes as model.rs's UpstreamOAuthProvider.
func (s *Server) listProviders(w http.ResponseWriter, r *http.Request) {
	p, ok := parsePagination(w, r)
	if !ok {
		return
	}
	fen := p.filters.Get("filter[enabled]")
	if fen != "" && fen != "true" && fen != "false" {
		adminError(w, http.StatusBadRequest, "Invalid filter parameters")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []item
	epoch := time.Unix(0, 0).UTC()
	for _, id := range sortedKeys(s.providers) {
		pr := s.providers[id]
		if fen != "" && (fen == "true") == pr.Disabled {
			continue
		}
		var disabledAt any
		if pr.Disabled {
			disabledAt = epoch
		}
		items = append(items, item{id: id, attrs: map[string]any{
			"issuer":                      nullable(pr.Issuer),
			"human_name":                  nullable(pr.HumanName),
			"brand_name":                  nullable(pr.BrandName),
			"created_at":                  epoch,
			"disabled_at":                 disabledAt,
			"registration_token_required": false,
		}})
	}
	p.write(w, "upstream-oauth-provider", providersPath, providersPath, items)
}

type link struct {
	id, providerID, subject, userID, humanName string
	createdAt                                  time.Time
}

func (l *link) attributes() map[string]any {
	return map[string]any{
		"created_at":         l.createdAt,
		"provider_id":        l.providerID,
		"subject":            l.subject,
		"user_id":            nullable(l.userID),
		"human_account_name": nullable(l.humanName),
	}
}

const linksPath = "/api/admin/v1/upstream-oauth-links"

// AddUnlinkedLink records a link with no user, as a login at the provider
// that never finished registration leaves behind. It returns its ID.
func (s *Server) AddUnlinkedLink(providerID, subject string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &link{id: s.newID(), providerID: providerID, subject: subject, createdAt: s.o.Clock().UTC()}
	s.links[l.id] = l
	return l.id
}

// LinkedUser returns the username the provider's subject is linked to, ""
// if none.
func (s *Server) LinkedUser(providerID, subject string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.links {
		if l.providerID == providerID && l.subject == subject && l.userID != "" {
			if u, ok := s.users[l.userID]; ok {
				return u.username
			}
		}
	}
	return ""
}

// addLink is POST upstream-oauth-links (crates/handlers/src/admin/v1/
// upstream_oauth_links/add.rs): 404 for an unknown user, then an unknown
// provider; an existing link for the subject is 409 if it has a user (any
// user, this one included) and is attached with 200 if it has none; a new
// link is 201.
func (s *Server) addLink(w http.ResponseWriter, r *http.Request) {
	var req struct {
		UserID     string  `json:"user_id"`
		ProviderID string  `json:"provider_id"`
		Subject    string  `json:"subject"`
		HumanName  *string `json:"human_account_name"`
	}
	if !readJSON(w, r, &req, "user_id", "provider_id", "subject") {
		return
	}
	uid, ok1 := parseULID(req.UserID)
	pid, ok2 := parseULID(req.ProviderID)
	if !ok1 || !ok2 {
		plain(w, http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: invalid ULID")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[uid]; !ok {
		adminError(w, http.StatusNotFound, "User ID "+uid+" not found")
		return
	}
	if _, ok := s.providers[pid]; !ok {
		adminError(w, http.StatusNotFound, "Upstream OAuth 2.0 Provider ID "+pid+" not found")
		return
	}
	for _, l := range s.links {
		if l.providerID != pid || l.subject != req.Subject {
			continue
		}
		if l.userID != "" {
			// The title's spelling ("Oauth") is MAS's.
			adminError(w, http.StatusConflict, "Upstream Oauth 2.0 Provider ID "+pid+" with subject "+req.Subject+" is already linked to a user")
			return
		}
		l.userID = uid // the human account name is left as it was
		single(w, http.StatusOK, "upstream-oauth-link", linksPath, l.id, l.attributes(), "")
		return
	}
	l := &link{id: s.newID(), providerID: pid, subject: req.Subject, userID: uid, createdAt: s.o.Clock().UTC()}
	if req.HumanName != nil {
		l.humanName = *req.HumanName
	}
	s.links[l.id] = l
	single(w, http.StatusCreated, "upstream-oauth-link", linksPath, l.id, l.attributes(), "")
}

// listLinks is GET upstream-oauth-links (.../upstream_oauth_links/list.rs)
// with filter[user] and filter[provider] (404 if absent: "User ID … not
// found", "Provider ID … not found") and filter[subject].
func (s *Server) listLinks(w http.ResponseWriter, r *http.Request) {
	p, ok := parsePagination(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fu, fp, fs := p.filters.Get("filter[user]"), p.filters.Get("filter[provider]"), p.filters.Get("filter[subject]")
	if fu != "" {
		id, ok := parseULID(fu)
		if !ok {
			adminError(w, http.StatusBadRequest, "Invalid filter parameters")
			return
		}
		if _, ok := s.users[id]; !ok {
			adminError(w, http.StatusNotFound, "User ID "+id+" not found")
			return
		}
		fu = id
	}
	if fp != "" {
		id, ok := parseULID(fp)
		if !ok {
			adminError(w, http.StatusBadRequest, "Invalid filter parameters")
			return
		}
		if _, ok := s.providers[id]; !ok {
			adminError(w, http.StatusNotFound, "Provider ID "+id+" not found")
			return
		}
		fp = id
	}
	var items []item
	for _, id := range sortedKeys(s.links) {
		l := s.links[id]
		if (fu == "" || l.userID == fu) && (fp == "" || l.providerID == fp) && (fs == "" || l.subject == fs) {
			items = append(items, item{id: id, attrs: l.attributes()})
		}
	}
	p.write(w, "upstream-oauth-link", linksPath, linksPath, items)
}
