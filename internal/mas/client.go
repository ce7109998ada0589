package mas

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provision-matrix/provision/internal/matrix"
)

// AdminScope is the scope the admin API requires
// (crates/handlers/src/admin/call_context.rs).
const AdminScope = "urn:mas:admin"

// MaxBodySize bounds every answer this package reads.
const MaxBodySize = 1 << 20

const userAgent = "provision (Matrix account provisioning)"

// adminPrefix is where the adminapi resource mounts the API
// (crates/handlers/src/admin/mod.rs).
const adminPrefix = "/api/admin/v1"

// Client talks to one MAS instance. It is safe for concurrent use.
type Client struct {
	base     string // scheme://host[:port][/prefix], no trailing slash
	hc       *http.Client
	clientID string
	secret   []byte
	scope    string
	now      func() time.Time

	mu  sync.Mutex // guards tok
	tok token
	// refreshing is a one-slot semaphore: one token request at a time, and
	// a waiter can give up when its context ends.
	refreshing chan struct{}
}

type token struct {
	value   []byte
	renewAt time.Time // when to fetch the next one, before it expires
}

// NewClient returns a client for the MAS instance at baseURL (the listener
// that serves both the oauth and adminapi resources, e.g.
// https://auth.example.org). hc nil means matrix.DefaultHTTPClient (no
// redirects). clientID is the ULID of a client configured with
// client_auth_method: client_secret_basic; the secret is copied. scopes are
// requested besides urn:mas:admin.
func NewClient(baseURL string, hc *http.Client, clientID string, clientSecret []byte, scopes []string) (*Client, error) {
	base, err := normalizeBase(baseURL)
	if err != nil {
		return nil, err
	}
	clientID = strings.TrimSpace(clientID)
	if !isULID(clientID) {
		// MAS requires a ULID for every configured client (docs/reference/
		// configuration.md, "clients"); a colon would also break Basic auth.
		return nil, fmt.Errorf("MAS client ID %q: must be a ULID (26 characters, 0-9 and A-Z without I, L, O, U), as in the clients: section of MAS's config", sanitize(clientID, 40))
	}
	secret := bytes.TrimSpace(clientSecret)
	if len(secret) == 0 {
		return nil, errors.New("MAS client secret: empty")
	}
	scope := []string{AdminScope}
	for _, s := range scopes {
		for _, f := range strings.Fields(s) {
			if f != AdminScope && !contains(scope, f) {
				scope = append(scope, f)
			}
		}
	}
	if hc == nil {
		hc = matrix.DefaultHTTPClient()
	}
	return &Client{
		base:       base,
		hc:         hc,
		clientID:   clientID,
		secret:     bytes.Clone(secret),
		scope:      strings.Join(scope, " "),
		now:        time.Now,
		refreshing: make(chan struct{}, 1),
	}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// URL returns the normalised base URL.
func (c *Client) URL() string { return c.base }

func normalizeBase(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("MAS URL %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("MAS URL %q: must start with https:// (or http://)", raw)
	case u.Host == "":
		return "", fmt.Errorf("MAS URL %q: no host name", raw)
	case u.User != nil:
		return "", errors.New("MAS URL: must not contain a user name or password")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "", fmt.Errorf("MAS URL %q: must not have a query or fragment", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u.String(), nil
}

// isULID reports whether s is a canonical ULID: 26 Crockford base32
// characters, the first at most 7 (128 bits).
func isULID(s string) bool {
	if len(s) != 26 || s[0] > '7' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune("0123456789ABCDEFGHJKMNPQRSTVWXYZ", rune(s[i])) {
			return false
		}
	}
	return true
}

// renewMargin is how long before expiry a token is replaced: a fifth of its
// lifetime, at most 30 s. The cap keeps long-lived tokens in use; the
// fraction keeps short ones (MAS's default is 300 s) from being renewed on
// every request. A token that still expires in flight is renewed on the 401.
func renewMargin(lifetime time.Duration) time.Duration {
	return min(lifetime/5, 30*time.Second)
}

// defaultLifetime is assumed when the token endpoint does not say: MAS's
// default experimental.access_token_ttl.
const defaultLifetime = 300 * time.Second

// accessToken returns a usable token. stale, if not nil, is a token the admin
// API just refused: it is not returned again.
func (c *Client) accessToken(ctx context.Context, stale []byte) ([]byte, error) {
	if t := c.cached(stale); t != nil {
		return t, nil
	}
	select {
	case c.refreshing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.refreshing }()
	// Another caller may have renewed it while this one waited.
	if t := c.cached(stale); t != nil {
		return t, nil
	}
	value, lifetime, err := c.requestToken(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.tok = token{value: value, renewAt: c.now().Add(lifetime - renewMargin(lifetime))}
	c.mu.Unlock()
	return value, nil
}

func (c *Client) cached(stale []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.tok
	if t.value == nil || !c.now().Before(t.renewAt) || (stale != nil && bytes.Equal(stale, t.value)) {
		return nil
	}
	return t.value
}

// requestToken runs the client credentials grant
// (crates/handlers/src/oauth2/token.rs, client_credentials_grant).
func (c *Client) requestToken(ctx context.Context) ([]byte, time.Duration, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {c.scope}}
	target := c.base + "/oauth2/token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, 0, fmt.Errorf("get a MAS access token: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	// RFC 6749 §2.3.1 asks clients to form-urlencode the ID and secret
	// before Basic encoding, but MAS's token endpoint does not decode them
	// (crates/axum-utils/src/client_authorization.rs takes the headers
	// crate's Basic credentials as they are): a secret with '+', '/' or '='
	// would no longer match. So they are sent as they are, as `curl -u` in
	// MAS's docs/topics/admin-api.md does. The ID is a ULID and has no colon.
	cred := make([]byte, 0, len(c.clientID)+1+len(c.secret))
	cred = append(append(append(cred, c.clientID...), ':'), c.secret...)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString(cred))
	clear(cred)

	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, &notLanded{fmt.Errorf("get a MAS access token: %w",
			&matrix.NetError{Method: http.MethodPost, URL: target, Err: unwrapURLError(err)})}
	}
	defer resp.Body.Close()
	data, readErr := readBody(resp.Body)
	if resp.StatusCode != http.StatusOK {
		e := parseError(resp.StatusCode, resp.Header, data, c.now())
		return nil, 0, &notLanded{tokenError(e)}
	}
	if readErr != nil {
		return nil, 0, &notLanded{fmt.Errorf("get a MAS access token: %w",
			&matrix.NetError{Method: http.MethodPost, URL: target, Sent: true, Err: readErr})}
	}
	var res struct {
		AccessToken string  `json:"access_token"`
		TokenType   string  `json:"token_type"`
		ExpiresIn   float64 `json:"expires_in"`
	}
	if json.Unmarshal(data, &res) != nil || res.AccessToken == "" {
		// Never quote the body: it may hold the token.
		return nil, 0, &notLanded{fmt.Errorf("get a MAS access token: POST %s answered HTTP 200 without an access token: %w", target, ErrNoTokenEndpoint)}
	}
	if res.TokenType != "" && !strings.EqualFold(res.TokenType, "Bearer") {
		return nil, 0, &notLanded{fmt.Errorf("get a MAS access token: unsupported token type %q", sanitize(res.TokenType, 20))}
	}
	lifetime := defaultLifetime
	if res.ExpiresIn > 0 {
		lifetime = time.Duration(min(res.ExpiresIn, float64(maxTokenLifetime/time.Second))) * time.Second
	}
	return []byte(res.AccessToken), lifetime, nil
}

// maxTokenLifetime bounds the expires_in a token endpoint may claim: a day, so that
// an absurd answer cannot keep a token past any rotation.
const maxTokenLifetime = 24 * time.Hour

// tokenError explains the token endpoint's refusal. The codes and statuses
// are those of crates/handlers/src/oauth2/token.rs and
// crates/axum-utils/src/client_authorization.rs.
func tokenError(e *Error) error {
	const op = "get a MAS access token"
	switch {
	case e.Code == "invalid_client":
		e.sentinel = ErrBadClient
		return fmt.Errorf("%s: %w", op, &hinted{ErrBadClient, e,
			"check the client ID and the secret file against the client's entry under clients: in MAS's config (client_auth_method: client_secret_basic), and that MAS was restarted (or `mas-cli config sync` run) after it was added"})
	case e.Code == "unauthorized_client":
		e.sentinel = ErrNotAdminClient
		return fmt.Errorf("%s: %w", op, &hinted{ErrNotAdminClient, e,
			"the client may not use the client_credentials grant: configure it under clients: in MAS's config with client_auth_method: client_secret_basic"})
	case e.Code == "invalid_scope":
		e.sentinel = ErrNotAdminClient
		hint := "add the client ID to policy.data.admin_clients in MAS's config and restart MAS"
		if !strings.Contains(strings.Join(e.Titles, " "), AdminScope) {
			// policies/authorization_grant/authorization_grant.rego grants a
			// client_credentials token only urn:mas:admin (for admin
			// clients), openid, email and urn:mas:graphql:*.
			hint = "MAS grants a client_credentials token no scope but urn:mas:admin, openid, email and urn:mas:graphql:* (not urn:synapse:admin:*): request fewer scopes"
		}
		return fmt.Errorf("%s: %w", op, &hinted{ErrNotAdminClient, e, hint})
	case e.Status == http.StatusNotFound || e.Status == http.StatusMethodNotAllowed:
		e.sentinel = ErrNoTokenEndpoint
		return fmt.Errorf("%s: %w", op, &hinted{ErrNoTokenEndpoint, e,
			"give --mas the URL of a MAS listener that serves both the oauth and the adminapi resources"})
	}
	return fmt.Errorf("%s: %w", op, e)
}

// request describes one admin API exchange.
type request struct {
	method string
	path   string     // below /api/admin/v1, already escaped
	query  url.Values // not secret
	in     any        // JSON body; nil for none
	out    any        // decoded from a 2xx answer; nil to ignore it
}

// do performs an admin API request with a bearer token, renewing the token
// once if the API refuses it. It returns the status of a 2xx answer, an
// *Error for any other, or a *matrix.NetError; GETs and requests never sent
// are marked so that MayHaveLanded says false.
func (c *Client) do(ctx context.Context, r request) (int, error) {
	status, err := c.doAuthorized(ctx, r)
	if err != nil && r.method == http.MethodGet {
		err = &notLanded{err}
	}
	return status, err
}

func (c *Client) doAuthorized(ctx context.Context, r request) (int, error) {
	tok, err := c.accessToken(ctx, nil)
	if err != nil {
		return 0, &notLanded{err}
	}
	status, err := c.exchange(ctx, r, tok)
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
		return status, err
	}
	// The admin API checks the token before any handler runs
	// (crates/handlers/src/admin/call_context.rs): a 401 changed nothing,
	// so the request can be sent again with a new token. An expired or
	// revoked token is the usual reason.
	tok, err = c.accessToken(ctx, tok)
	if err != nil {
		return 0, &notLanded{err}
	}
	status, err = c.exchange(ctx, r, tok)
	if errors.As(err, &e) && e.Status == http.StatusUnauthorized {
		e.sentinel = ErrUnauthorized
		return status, &notLanded{&hinted{ErrUnauthorized, e,
			"MAS issued the token but its admin API refuses it: check that the client is in policy.data.admin_clients"}}
	}
	return status, err
}

func (c *Client) exchange(ctx context.Context, r request, tok []byte) (int, error) {
	target := c.base + adminPrefix + r.path
	var body io.Reader
	if r.in != nil {
		raw, err := json.Marshal(r.in)
		if err != nil {
			// Never wrap the marshalling error: it could quote the body.
			return 0, fmt.Errorf("%s %s: cannot encode the request body", r.method, target)
		}
		body = bytes.NewReader(raw)
	}
	rawURL := target
	if len(r.query) > 0 {
		rawURL += "?" + r.query.Encode()
	}
	var sent atomic.Bool
	trace := &httptrace.ClientTrace{WroteHeaders: func() { sent.Store(true) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), r.method, rawURL, body)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", r.method, target, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if r.in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+string(tok))
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, &matrix.NetError{Method: r.method, URL: target, Sent: sent.Load(), Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	data, readErr := readBody(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := parseError(resp.StatusCode, resp.Header, data, c.now())
		if e.Status == http.StatusNotFound && !e.isMAS() {
			// MAS's router answers an unknown path with an empty 404; so
			// does a listener without the adminapi resource.
			e.sentinel = ErrNoAdminAPI
			return resp.StatusCode, &hinted{ErrNoAdminAPI, e,
				"add the adminapi resource to the MAS listener that --mas points at (http.listeners in MAS's config)"}
		}
		return resp.StatusCode, e
	}
	if readErr != nil {
		return resp.StatusCode, &matrix.NetError{Method: r.method, URL: target, Sent: true, Err: readErr}
	}
	if r.out != nil {
		if err := json.Unmarshal(data, r.out); err != nil {
			return resp.StatusCode, &matrix.NetError{Method: r.method, URL: target, Sent: true,
				Err: fmt.Errorf("malformed answer (HTTP %d): %v", resp.StatusCode, err)}
		}
	}
	return resp.StatusCode, nil
}

func readBody(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBodySize+1))
	if err != nil {
		return data, fmt.Errorf("read answer: %w", err)
	}
	if len(data) > MaxBodySize {
		return data[:MaxBodySize], fmt.Errorf("answer larger than %d bytes", MaxBodySize)
	}
	return data, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}
