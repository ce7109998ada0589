package matrix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// AuthIssuer asks the homeserver whether it delegates authentication to an
// OAuth 2.0 server (Matrix Authentication Service, MSC3861) and, if so, for
// that server's issuer URL. It reads GET /_matrix/client/v1/auth_metadata
// (MSC2965, stable) and, on servers that predate it, the unstable
// /_matrix/client/unstable/org.matrix.msc2965/auth_issuer; both answer
// {"issuer": ...}. Synapse registers them only when MAS is enabled
// (synapse/rest/client/auth_metadata.py): a 404 from both means the server
// handles logins itself, which is not an error.
func (c *Client) AuthIssuer(ctx context.Context) (issuer string, delegated bool, err error) {
	for _, path := range []string{
		"/_matrix/client/v1/auth_metadata",
		"/_matrix/client/unstable/org.matrix.msc2965/auth_issuer",
	} {
		var res struct {
			Issuer string `json:"issuer"`
		}
		_, err := c.do(ctx, request{method: http.MethodGet, path: path, out: &res})
		if notServed(err) {
			continue
		}
		if err != nil {
			return "", false, fmt.Errorf("ask whether the server delegates logins: %w", err)
		}
		if res.Issuer == "" {
			return "", false, fmt.Errorf("ask whether the server delegates logins: GET %s answered without an issuer", path)
		}
		return res.Issuer, true, nil
	}
	return "", false, nil
}

// notServed reports an answer that means "no such endpoint here": Synapse's
// and Dendrite's 404 M_UNRECOGNIZED, Synapse's 404 M_NOT_FOUND when MAS is
// off but the servlet is there anyway, or a proxy's bare 404.
func notServed(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound &&
		(e.Errcode == "" || e.Errcode == ErrcodeUnrecognized || e.Errcode == ErrcodeNotFound)
}
