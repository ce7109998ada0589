package mastest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"hash/crc32"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

type accessToken struct {
	expires time.Time
	scopes  []string
}

// oauthError writes an OAuth 2.0 error (RFC 6749 §5.2) the way MAS's
// oauth2_types::errors::ClientError serialises: the code and, by default, the
// code's standard description (crates/oauth2-types/src/errors.rs).
func oauthError(w http.ResponseWriter, status int, code, description string) {
	if description == "" {
		description = map[string]string{
			"invalid_request":        "The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed.",
			"invalid_client":         "Client authentication failed.",
			"unauthorized_client":    "The client is not authorized to request an access token using this method.",
			"invalid_scope":          "The requested scope is invalid, unknown, or malformed.",
			"unsupported_grant_type": "The authorization grant type is not supported by the authorization server.",
		}[code]
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

// token is POST /oauth2/token for the client credentials grant.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	// Client authentication: crates/axum-utils/src/client_authorization.rs.
	var id, secret string
	var basic bool
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) < 6 || !strings.EqualFold(h[:6], "Basic ") {
			// A Bearer header is parsed but is no client credential; anything
			// else is InvalidHeader.
			oauthError(w, http.StatusBadRequest, "invalid_request", "Invalid Authorization header")
			return
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[6:]))
		i := strings.IndexByte(string(raw), ':')
		if err != nil || i < 0 {
			oauthError(w, http.StatusBadRequest, "invalid_request", "Invalid Authorization header")
			return
		}
		// The headers crate's Basic credentials are used as they are: MAS
		// does not form-urldecode them (RFC 6749 §2.3.1 says it should).
		id, secret, basic = string(raw[:i]), string(raw[i+1:]), true
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isForm := ct == "application/x-www-form-urlencoded"
	var form url.Values
	if isForm {
		if err := r.ParseForm(); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request", "Failed to deserialize form")
			return
		}
		form = r.PostForm
	}
	switch {
	case basic && form.Get("client_id") != "" && form.Get("client_id") != id:
		// ClientIdMismatch.
		oauthError(w, http.StatusBadRequest, "invalid_grant", "client_id in form does not match credential")
		return
	case !basic && form.Get("client_id") == "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "No credentials were presented")
		return
	case !basic:
		// client_secret_post or none: the configured method is
		// client_secret_basic, so verification fails with
		// AuthenticationMethodMismatch → 401 invalid_client
		// (crates/handlers/src/oauth2/token.rs, InvalidClientCredentials).
		oauthError(w, http.StatusUnauthorized, "invalid_client", "")
		return
	}
	// token.rs: ClientNotFound / InvalidClientCredentials → 401 invalid_client.
	if id != s.o.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(s.o.ClientSecret)) != 1 {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "")
		return
	}
	if !isForm {
		// token.rs: no form → RouteError::BadRequest.
		oauthError(w, http.StatusBadRequest, "invalid_request", "")
		return
	}
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		// The other grants need users or codes this fake does not have.
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "")
		return
	}
	// The policy (policies/authorization_grant/authorization_grant.rego)
	// allows a client_credentials grant only these scopes, and
	// urn:mas:admin only to clients in policy.data.admin_clients; a
	// violation is 403 invalid_scope with the violations as description
	// (token.rs, DeniedByPolicy).
	scopes := strings.Fields(form.Get("scope"))
	var violations []string
	for _, sc := range scopes {
		ok := sc == "openid" || sc == "email" || sc == "urn:mas:graphql:*" ||
			(sc == "urn:mas:admin" && !s.o.NotAdminClient)
		if !ok {
			violations = append(violations, "scope '"+sc+"' not allowed")
		}
	}
	if len(violations) > 0 {
		oauthError(w, http.StatusForbidden, "invalid_scope", strings.Join(violations, ", "))
		return
	}
	tok := newAccessToken()
	s.mu.Lock()
	s.tokens[tok] = accessToken{expires: s.o.Clock().Add(s.o.TokenLifetime), scopes: scopes}
	s.mu.Unlock()
	res := map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int64(s.o.TokenLifetime / time.Second),
	}
	if len(scopes) > 0 {
		// client_credentials_grant returns the scope only if not empty.
		res["scope"] = strings.Join(scopes, " ")
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, res)
}

// newAccessToken makes a token in MAS's format (crates/data-model/src/
// tokens.rs, TokenType::generate): "mat_", 30 alphanumerics, "_", and the
// CRC-32 of what precedes in base62, six characters.
func newAccessToken() string {
	const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 30)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	base := "mat_" + string(b)
	return base + "_" + base62(crc32.ChecksumIEEE([]byte(base)))
}

// base62 writes n least significant digit first, padded on the left with
// zeros to six characters, as tokens.rs does.
func base62(n uint32) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var out []byte
	for n > 0 {
		out = append(out, digits[n%62])
		n /= 62
	}
	for len(out) < 6 {
		out = append([]byte{'0'}, out...)
	}
	return string(out)
}

// checkFormat is TokenType::check (crates/data-model/src/tokens.rs): three
// parts, 3 + 30 + 6 characters, a known prefix, a matching CRC. It returns
// the prefix, or the TokenFormatError's text.
func checkFormat(tok string) (prefix, problem string) {
	parts := strings.Split(tok, "_")
	if len(parts) != 3 || len(parts[0]) != 3 || len(parts[1]) != 30 || len(parts[2]) != 6 {
		return "", "invalid token format"
	}
	switch parts[0] {
	case "mat", "mar", "mct", "syt", "mcr", "syr", "mpt":
	default:
		return "", "unknown token prefix " + rustDebug(parts[0])
	}
	if want := base62(crc32.ChecksumIEEE([]byte(parts[0] + "_" + parts[1]))); parts[2] != want {
		return "", "invalid crc " + rustDebug(parts[2]) + ", expected " + rustDebug(want)
	}
	return parts[0], ""
}

// admin wraps an admin API handler in MAS's authorisation
// (crates/handlers/src/admin/call_context.rs): every problem with the bearer
// token is 401 but a missing or malformed header, which is 400.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h0 := r.Header.Get("Authorization")
		if h0 == "" {
			adminError(w, http.StatusBadRequest, "Missing authorization header")
			return
		}
		if len(h0) < 7 || !strings.EqualFold(h0[:7], "Bearer ") || strings.TrimSpace(h0[7:]) == "" {
			adminError(w, http.StatusBadRequest, "Invalid authorization header")
			return
		}
		tok := strings.TrimSpace(h0[7:])
		prefix, problem := checkFormat(tok)
		switch {
		case problem != "":
			// InvalidAccessTokenType(Some(TokenFormatError)): the cause
			// follows the title (response.rs walks the error's sources).
			adminError(w, http.StatusUnauthorized, "Invalid type of access token", problem)
			return
		case prefix != "mat":
			// Refresh tokens and the like are not accepted here.
			adminError(w, http.StatusUnauthorized, "Invalid type of access token")
			return
		}
		s.mu.Lock()
		t, found := s.tokens[tok]
		now := s.o.Clock()
		s.mu.Unlock()
		switch {
		case !found:
			adminError(w, http.StatusUnauthorized, "Unknown access token")
			return
		case !now.Before(t.expires):
			adminError(w, http.StatusUnauthorized, "Access token expired")
			return
		case !contains(t.scopes, "urn:mas:admin"):
			adminError(w, http.StatusUnauthorized, "Missing urn:mas:admin scope")
			return
		}
		h(w, r)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// adminError writes the admin API's error body: the error's title, then
// its causes' (crates/handlers/src/admin/response.rs, ErrorResponse).
func adminError(w http.ResponseWriter, status int, titles ...string) {
	errs := make([]map[string]string, len(titles))
	for i, t := range titles {
		errs[i] = map[string]string{"title": t}
	}
	writeJSON(w, status, map[string]any{"errors": errs})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}
