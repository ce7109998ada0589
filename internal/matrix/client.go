package matrix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// MaxBodySize bounds every response body this package reads: a proxy or a
// hostile server cannot make the client buffer more than this.
const MaxBodySize = 1 << 20

// userAgent identifies the tool in the server's access logs.
const userAgent = "provision (Matrix account provisioning)"

// Client talks to one homeserver. It is safe for concurrent use.
type Client struct {
	base string // scheme://host[:port][/prefix], no trailing slash
	hc   *http.Client
	now  func() time.Time // for HTTP-date Retry-After headers
}

// NewClient returns a client for the homeserver's client-server API base URL
// (e.g. https://matrix.example.org). hc nil means a client tuned for a pool
// of up to 64 concurrent requests that does not follow redirects.
func NewClient(homeserver string, hc *http.Client) (*Client, error) {
	base, err := normalizeBase(homeserver)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = DefaultHTTPClient()
	}
	return &Client{base: base, hc: hc, now: time.Now}, nil
}

func normalizeBase(homeserver string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(homeserver))
	if err != nil {
		return "", fmt.Errorf("homeserver URL %q: %w", homeserver, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("homeserver URL %q: must start with https:// (or http://)", homeserver)
	case u.Host == "":
		return "", fmt.Errorf("homeserver URL %q: no host name", homeserver)
	case u.User != nil:
		// Credentials in the URL would end up in every error message.
		return "", fmt.Errorf("homeserver URL: must not contain a user name or password")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "", fmt.Errorf("homeserver URL %q: must not have a query or fragment", homeserver)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u.String(), nil
}

// Homeserver returns the normalised base URL.
func (c *Client) Homeserver() string { return c.base }

// DefaultHTTPClient is the client NewClient uses when given none: keep-alives
// with enough idle connections per host for a pool of 64 workers, bounded
// dial and TLS handshakes, an overall timeout that leaves room for a
// homeserver hashing passwords under load, and no redirects (a redirected
// POST would become a GET).
func DefaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.MaxIdleConns = 128
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = 90 * time.Second
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ExpectContinueTimeout = time.Second
	return &http.Client{
		Transport: t,
		Timeout:   2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// request describes one exchange.
type request struct {
	method string
	path   string     // already escaped
	query  url.Values // not secret: it appears in server logs
	token  []byte     // bearer token; nil for none
	in     any        // JSON body; nil for none
	out    any        // decoded from a 2xx answer; nil to ignore it
}

// do performs one exchange. It returns the status of a 2xx answer, an *Error
// for any other answer, or a *NetError. Failures of GET requests are marked
// read-only for MayHaveLanded.
func (c *Client) do(ctx context.Context, r request) (int, error) {
	status, err := c.exchange(ctx, r)
	if err != nil && r.method == http.MethodGet {
		err = &readOnlyError{err}
	}
	return status, err
}

func (c *Client) exchange(ctx context.Context, r request) (int, error) {
	target := c.base + r.path
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
	// Whether the request left this process decides MayHaveLanded; a failed
	// connect or DNS look-up never gets this far.
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
	if len(r.token) > 0 {
		req.Header.Set("Authorization", "Bearer "+string(r.token))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, &NetError{Method: r.method, URL: target, Sent: sent.Load(), Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	data, readErr := readBody(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// A truncated error body still has its status: that is the answer.
		return resp.StatusCode, parseError(resp.StatusCode, resp.Header, data, c.now())
	}
	if readErr != nil {
		return resp.StatusCode, &NetError{Method: r.method, URL: target, Sent: true, Err: readErr}
	}
	if r.out != nil {
		if err := json.Unmarshal(data, r.out); err != nil {
			return resp.StatusCode, &NetError{Method: r.method, URL: target, Sent: true,
				Err: fmt.Errorf("%w (HTTP %d): %v", errMalformed, resp.StatusCode, err)}
		}
	}
	return resp.StatusCode, nil
}

// errMalformed marks a 2xx answer whose body is not what the endpoint sends:
// often a web server or proxy answering in the homeserver's place.
var errMalformed = errors.New("malformed answer")

// readBody reads at most MaxBodySize bytes, and drains a little more so that
// the connection can be reused.
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

// unwrapURLError drops *url.Error's `Post "https://…":` prefix: NetError
// already names the method and URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// userPath escapes a user ID, room ID or alias as one path segment (a
// localpart may contain '/', an alias starts with '#').
func userPath(prefix, id string) string {
	return prefix + url.PathEscape(id)
}
