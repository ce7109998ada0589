package mas

import (
	"context"
	"net/http"
	"time"

	"github.com/provision-matrix/provision/internal/matrix"
)

// Classify says what to do about the answer e, in package matrix's terms, so
// that a retry engine that knows nothing of MAS (batch.Classifier) treats it
// as [Classify] does.
func (e *Error) Classify() (matrix.Kind, time.Duration) { return Classify(e) }

// MayHaveLanded reports whether the request answered with e may have taken
// effect. A 5xx may have; a 4xx did not. (The package-level [MayHaveLanded]
// also knows the requests that were never sent; an *Error alone cannot.)
func (e *Error) MayHaveLanded() bool { return e.Status >= 500 }

// Classify and MayHaveLanded on the wrapper that marks reads and unsent
// requests: it is what errors.As finds first in the chain, and it must say
// "not landed" whatever the *Error inside says.
func (e *notLanded) Classify() (matrix.Kind, time.Duration) { return Classify(e.err) }
func (e *notLanded) MayHaveLanded() bool                    { return false }

// UserEmails returns the user's email addresses (GET user-emails with
// filter[user], all pages; crates/handlers/src/admin/v1/user_emails/list.rs).
func (c *Client) UserEmails(ctx context.Context, userID string) ([]string, error) {
	var out []string
	after := ""
	seen := map[string]bool{}
	for {
		q := pageQuery(after, 0)
		q.Set("filter[user]", userID)
		var res page[emailAttributes]
		if _, err := c.do(ctx, request{method: http.MethodGet, path: "/user-emails", query: q, out: &res}); err != nil {
			return nil, mapErr("list the email addresses of MAS user "+userID, err)
		}
		for _, r := range res.Data {
			out = append(out, r.Attributes.Email)
		}
		next := res.nextCursor(after)
		if next == "" || seen[next] {
			return out, nil
		}
		seen[next] = true
		after = next
	}
}

// UpstreamLink is one link of a user to an account at an upstream provider.
type UpstreamLink struct {
	ProviderID string
	Subject    string
}

// UserLinks returns the user's upstream links (GET upstream-oauth-links with
// filter[user], first page of 100: a person has a handful at most;
// .../upstream_oauth_links/list.rs).
func (c *Client) UserLinks(ctx context.Context, userID string) ([]UpstreamLink, error) {
	q := pageQuery("", 0)
	q.Set("filter[user]", userID)
	var res page[linkAttributes]
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/upstream-oauth-links", query: q, out: &res}); err != nil {
		return nil, mapErr("list the upstream links of MAS user "+userID, err)
	}
	out := make([]UpstreamLink, 0, len(res.Data))
	for _, r := range res.Data {
		out = append(out, UpstreamLink{ProviderID: r.Attributes.ProviderID, Subject: r.Attributes.Subject})
	}
	return out, nil
}

func mapErr(op string, err error) error {
	return &opError{op: op, err: mapError(err, nil)}
}

type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }
