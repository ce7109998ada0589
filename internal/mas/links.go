package mas

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

type emailAttributes struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
}

// AddEmail adds an email address to a user (POST user-emails;
// crates/handlers/src/admin/v1/user_emails/add.rs), bypassing MAS's email
// policy and without a verification mail. MAS answers 409 whenever any user
// has the address, the same user included (compared case-insensitively): on
// 409 the owner is looked up, and an address the user already has is
// success. ErrEmailInUse if another user has it, ErrInvalidEmail,
// ErrNotFound if the user does not exist.
func (c *Client) AddEmail(ctx context.Context, userID, email string) error {
	body := map[string]any{"user_id": userID, "email": email}
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/user-emails", in: body})
	if err == nil {
		return nil
	}
	op := fmt.Sprintf("add an email address to MAS user %s", userID)
	var conflict bool
	err = mapError(err, func(e *Error) error {
		switch e.Status {
		case http.StatusConflict:
			conflict = true
			return ErrEmailInUse
		case http.StatusBadRequest:
			if e.hasTitle("Email ") {
				return ErrInvalidEmail
			}
		}
		return nil
	})
	if !conflict {
		return fmt.Errorf("%s: %w", op, err)
	}
	owner, lookErr := c.emailOwner(ctx, email)
	switch {
	case lookErr != nil:
		return fmt.Errorf("%s: %w (and finding its owner failed: %v)", op, err, lookErr)
	case owner == userID:
		return nil
	case owner != "":
		return fmt.Errorf("%s: %w: it belongs to MAS user %s", op, err, owner)
	}
	// Gone between the two requests: the caller may try again.
	return fmt.Errorf("%s: %w", op, err)
}

// emailOwner returns the ID of the user who has email, "" if none
// (GET user-emails?filter[email]=; .../user_emails/list.rs).
func (c *Client) emailOwner(ctx context.Context, email string) (string, error) {
	q := pageQuery("", 1)
	q.Set("filter[email]", email)
	var res page[emailAttributes]
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/user-emails", query: q, out: &res}); err != nil {
		return "", mapError(err, nil)
	}
	for _, r := range res.Data {
		if strings.EqualFold(r.Attributes.Email, email) {
			return r.Attributes.UserID, nil
		}
	}
	return "", nil
}

// Provider is an upstream OAuth 2.0 / OIDC provider
// (crates/handlers/src/admin/model.rs, UpstreamOAuthProvider).
type Provider struct {
	ID                        string
	Issuer                    string // "" if the provider has none configured
	HumanName                 string
	BrandName                 string // "google", "apple", ... or ""
	CreatedAt                 time.Time
	DisabledAt                time.Time // zero if enabled
	RegistrationTokenRequired bool
}

// Enabled reports whether users can log in with the provider.
func (p Provider) Enabled() bool { return p.DisabledAt.IsZero() }

type providerAttributes struct {
	Issuer                    *string    `json:"issuer"`
	HumanName                 *string    `json:"human_name"`
	BrandName                 *string    `json:"brand_name"`
	CreatedAt                 time.Time  `json:"created_at"`
	DisabledAt                *time.Time `json:"disabled_at"`
	RegistrationTokenRequired bool       `json:"registration_token_required"`
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// UpstreamProviders lists every upstream provider, enabled or not
// (GET upstream-oauth-providers, all pages;
// crates/handlers/src/admin/v1/upstream_oauth_providers/list.rs).
func (c *Client) UpstreamProviders(ctx context.Context) ([]Provider, error) {
	var out []Provider
	seen := map[string]bool{}
	after := ""
	for {
		var res page[providerAttributes]
		_, err := c.do(ctx, request{method: http.MethodGet, path: "/upstream-oauth-providers", query: pageQuery(after, 0), out: &res})
		if err != nil {
			return nil, fmt.Errorf("list MAS's upstream providers: %w", mapError(err, nil))
		}
		for _, r := range res.Data {
			a := r.Attributes
			out = append(out, Provider{ID: r.ID, Issuer: deref(a.Issuer), HumanName: deref(a.HumanName),
				BrandName: deref(a.BrandName), CreatedAt: a.CreatedAt, DisabledAt: deref(a.DisabledAt),
				RegistrationTokenRequired: a.RegistrationTokenRequired})
		}
		next := res.nextCursor(after)
		if next == "" || seen[next] {
			return out, nil
		}
		seen[next] = true
		after = next
	}
}

type linkAttributes struct {
	ProviderID string  `json:"provider_id"`
	Subject    string  `json:"subject"`
	UserID     *string `json:"user_id"`
}

// AddUpstreamLink links the account with subject at the upstream provider to
// the user, so that logging in there lands on this user (POST
// upstream-oauth-links; crates/handlers/src/admin/v1/upstream_oauth_links/
// add.rs). MAS answers 201 for a new link and 200 when it attaches an
// existing link that had no user; it answers 409 when the link has a user,
// this one included: on 409 the link is looked up, and a link to this user
// is success. ErrLinkConflict if another user has it, ErrNotFound if the
// user or the provider does not exist. humanName may be "" (it is kept only
// on a new link).
func (c *Client) AddUpstreamLink(ctx context.Context, userID, providerID, subject, humanName string) error {
	body := map[string]any{"user_id": userID, "provider_id": providerID, "subject": subject}
	if humanName != "" {
		body["human_account_name"] = humanName
	}
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/upstream-oauth-links", in: body})
	if err == nil {
		return nil
	}
	op := fmt.Sprintf("link MAS user %s to subject %q of upstream provider %s", userID, sanitize(subject, 100), providerID)
	var conflict bool
	err = mapError(err, func(e *Error) error {
		if e.Status == http.StatusConflict {
			conflict = true
			return ErrLinkConflict
		}
		return nil
	})
	if !conflict {
		return fmt.Errorf("%s: %w", op, err)
	}
	owner, lookErr := c.linkOwner(ctx, providerID, subject)
	switch {
	case lookErr != nil:
		return fmt.Errorf("%s: %w (and finding its owner failed: %v)", op, err, lookErr)
	case owner == userID:
		return nil
	case owner != "":
		return fmt.Errorf("%s: %w: it is linked to MAS user %s", op, err, owner)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// linkOwner returns the user the provider's subject is linked to, "" if none
// (GET upstream-oauth-links?filter[provider]=&filter[subject]=;
// .../upstream_oauth_links/list.rs).
func (c *Client) linkOwner(ctx context.Context, providerID, subject string) (string, error) {
	q := pageQuery("", 1)
	q.Set("filter[provider]", providerID)
	q.Set("filter[subject]", subject)
	var res page[linkAttributes]
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/upstream-oauth-links", query: q, out: &res}); err != nil {
		return "", mapError(err, nil)
	}
	for _, r := range res.Data {
		if r.Attributes.ProviderID == providerID && r.Attributes.Subject == subject {
			return deref(r.Attributes.UserID), nil
		}
	}
	return "", nil
}
