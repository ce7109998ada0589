package matrix_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/provision-matrix/provision/internal/matrix"
)

// authServer answers the paths in routes with their bodies (status 200) and
// every other path as Synapse answers an unknown endpoint.
func authServer(t *testing.T, routes map[string]string) *matrix.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		body, ok := routes[r.Method+" "+r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`))
			return
		}
		if strings.HasPrefix(body, "HTTP ") {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	c, err := matrix.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAuthIssuer(t *testing.T) {
	t.Parallel()
	const stable = "GET /_matrix/client/v1/auth_metadata"
	const unstable = "GET /_matrix/client/unstable/org.matrix.msc2965/auth_issuer"
	tests := []struct {
		name      string
		routes    map[string]string
		issuer    string
		delegated bool
		wantErr   bool
	}{
		{"stable auth_metadata", map[string]string{
			stable: `{"issuer":"https://auth.example.org/","authorization_endpoint":"https://auth.example.org/authorize","token_endpoint":"https://auth.example.org/oauth2/token"}`,
		}, "https://auth.example.org/", true, false},
		{"older Synapse: unstable auth_issuer only", map[string]string{
			unstable: `{"issuer":"https://auth.example.org/"}`,
		}, "https://auth.example.org/", true, false},
		{"not delegated", map[string]string{}, "", false, false},
		{"no issuer in the answer", map[string]string{stable: `{}`}, "", false, true},
		{"server error is not 'not delegated'", map[string]string{stable: "HTTP 503"}, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := authServer(t, tt.routes)
			issuer, delegated, err := c.AuthIssuer(t.Context())
			if (err != nil) != tt.wantErr || issuer != tt.issuer || delegated != tt.delegated {
				t.Errorf("AuthIssuer = %q, %v, %v; want %q, %v, error %v", issuer, delegated, err, tt.issuer, tt.delegated, tt.wantErr)
			}
			if err != nil && matrix.MayHaveLanded(err) {
				t.Error("MayHaveLanded = true for a GET")
			}
		})
	}
}
