package matrix

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
)

// The expected MACs were computed with Python's hmac module following
// PROTOCOL.md, independently of this code.
func TestRegistrationMAC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                      string
		secret                    string
		nonce, user, pw, userType string
		admin                     bool
		want                      string
	}{
		{"notadmin", "shared-secret", "abcdef", "alice", "correct horse", "", false, "167337694551dabdc2c5fb133c37ad9caafc90a7"},
		{"admin", "shared-secret", "abcdef", "alice", "correct horse", "", true, "317fb46ca271e97de2ff46e252cb245532f58279"},
		{"user type", "shared-secret", "abcdef", "bot1", "pw", "bot", false, "54f20f7457dc50e5acdf5acc7b33a641d7c8e8f0"},
		{"utf-8", "s\u00e9cret", "n\u00f6nce", "\u00e9", "p\u00e4ss", "", false, "a142461c23c4e0496c39d8241a9df454cbb9ef27"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := registrationMAC([]byte(tt.secret), tt.nonce, tt.user, tt.pw, tt.admin, tt.userType)
			if got != tt.want {
				t.Errorf("registrationMAC = %s, want %s", got, tt.want)
			}
		})
	}
}

func BenchmarkMAC(b *testing.B) {
	secret := []byte("a registration shared secret of a realistic length, 64 chars..")
	nonce := strings.Repeat("ab", 64)
	b.ReportAllocs()
	for b.Loop() {
		registrationMAC(secret, nonce, "alice.example", "Xk3v-9Lq2-Tt7w-Pz4m-Hc8r-Ny6d", false, "")
	}
}

func TestParseError(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name    string
		status  int
		header  http.Header
		body    string
		want    Error
		wantStr string
	}{
		{"synapse user in use", 400, nil, `{"errcode":"M_USER_IN_USE","error":"User ID already taken."}`,
			Error{Status: 400, Errcode: "M_USER_IN_USE", Message: "User ID already taken."},
			"M_USER_IN_USE: User ID already taken (HTTP 400)"},
		{"dendrite bare 500", 500, nil, `{"message":"incorrect or expired nonce: abc"}`,
			Error{Status: 500, Message: "incorrect or expired nonce: abc"},
			"incorrect or expired nonce: abc (HTTP 500)"},
		{"proxy html", 502, nil, `<html><body>Bad Gateway</body></html>`,
			Error{Status: 502}, "HTTP 502 Bad Gateway"},
		{"errcode only", 404, nil, `{"errcode":"M_UNRECOGNIZED"}`,
			Error{Status: 404, Errcode: "M_UNRECOGNIZED"}, "M_UNRECOGNIZED (HTTP 404)"},
		{"retry_after_ms wins over header", 429, http.Header{"Retry-After": {"9"}},
			`{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":1500}`,
			Error{Status: 429, Errcode: "M_LIMIT_EXCEEDED", Message: "Too Many Requests", RetryAfter: 1500 * time.Millisecond},
			"M_LIMIT_EXCEEDED: Too Many Requests (HTTP 429)"},
		{"header seconds", 429, http.Header{"Retry-After": {"3"}}, `{"errcode":"M_LIMIT_EXCEEDED"}`,
			Error{Status: 429, Errcode: "M_LIMIT_EXCEEDED", RetryAfter: 3 * time.Second}, "M_LIMIT_EXCEEDED (HTTP 429)"},
		{"header http-date", 503, http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, ``,
			Error{Status: 503, RetryAfter: 90 * time.Second}, "HTTP 503 Service Unavailable"},
		{"header garbage", 429, http.Header{"Retry-After": {"soon"}}, ``,
			Error{Status: 429}, "HTTP 429 Too Many Requests"},
		{"fields of the wrong type are dropped one by one", 400, nil, `{"errcode":5,"error":"kept","retry_after_ms":"x"}`,
			Error{Status: 400, Message: "kept"}, "kept (HTTP 400)"},
		{"huge retry is capped", 429, nil, `{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":1e20}`,
			Error{Status: 429, Errcode: "M_LIMIT_EXCEEDED", RetryAfter: maxRetryAfter}, "M_LIMIT_EXCEEDED (HTTP 429)"},
		{"control characters do not reach the terminal", 400, nil, `{"errcode":"M_UNKNOWN","error":"bad\u001b[31m\nthing"}`,
			Error{Status: 400, Errcode: "M_UNKNOWN", Message: "bad\x1b[31m\nthing"}, "M_UNKNOWN: bad?[31m thing (HTTP 400)"},
		{"redirect names the target", 301, http.Header{"Location": {"https://matrix.example.org/"}}, ``,
			Error{Status: 301, Message: "redirected to https://matrix.example.org/; use that URL as the homeserver"},
			"redirected to https://matrix.example.org/; use that URL as the homeserver (HTTP 301)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := tt.header
			if h == nil {
				h = http.Header{}
			}
			got := parseError(tt.status, h, []byte(tt.body), now)
			if *got != tt.want {
				t.Errorf("parseError = %+v, want %+v", *got, tt.want)
			}
			if got.Error() != tt.wantStr {
				t.Errorf("Error() = %q, want %q", got.Error(), tt.wantStr)
			}
		})
	}
}

func FuzzParseError(f *testing.F) {
	f.Add(400, `{"errcode":"M_USER_IN_USE","error":"User ID already taken."}`, "")
	f.Add(500, `{"message":"incorrect or expired nonce: x"}`, "")
	f.Add(429, `{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":-5}`, "7")
	f.Add(503, `<html>`, "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Fuzz(func(t *testing.T, status int, body, retryAfter string) {
		e := parseError(status, http.Header{"Retry-After": {retryAfter}}, []byte(body), time.Unix(0, 0))
		if e.RetryAfter < 0 || e.RetryAfter > maxRetryAfter {
			t.Errorf("RetryAfter = %v out of range", e.RetryAfter)
		}
		s := e.Error()
		for _, r := range s {
			if r != ' ' && !unicode.IsPrint(r) {
				t.Fatalf("Error() contains %q: %q", r, s)
			}
		}
		Classify(e)
	})
}

func TestClassify(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name      string
		err       error
		kind      Kind
		wait      time.Duration
		mayLanded bool
	}{
		{"429 M_LIMIT_EXCEEDED", &Error{Status: 429, Errcode: "M_LIMIT_EXCEEDED", RetryAfter: time.Second}, RateLimited, time.Second, false},
		{"429 from a proxy", &Error{Status: 429, RetryAfter: 2 * time.Second}, RateLimited, 2 * time.Second, false},
		{"429 spam checker", &Error{Status: 429, Errcode: "M_UNKNOWN"}, Refused, 0, false},
		{"400 user in use", &Error{Status: 400, Errcode: "M_USER_IN_USE"}, Refused, 0, false},
		{"403", &Error{Status: 403, Errcode: "M_FORBIDDEN"}, Refused, 0, false},
		{"500", &Error{Status: 500}, Retry, 0, true},
		{"502 wrapped", fmt.Errorf("register x: %w", &Error{Status: 502}), Retry, 0, true},
		{"503 with Retry-After", &Error{Status: 503, RetryAfter: 5 * time.Second}, Retry, 5 * time.Second, true},
		{"501", &Error{Status: 501}, Permanent, 0, true},
		{"408", &Error{Status: 408}, Retry, 0, false},
		{"301", &Error{Status: 301}, Permanent, 0, false},
		{"GET 500 is read-only", &readOnlyError{&Error{Status: 500}}, Retry, 0, false},
		{"connection refused", &NetError{Method: "POST", Err: refused}, Retry, 0, false},
		{"reset after sending", &NetError{Method: "POST", Sent: true, Err: syscall.ECONNRESET}, Retry, 0, true},
		{"timeout after sending", &NetError{Method: "POST", Sent: true, Err: context.DeadlineExceeded}, Retry, 0, true},
		{"cancelled", &NetError{Method: "POST", Sent: true, Err: context.Canceled}, Permanent, 0, true},
		{"no such host", &NetError{Method: "POST", Err: &net.DNSError{Err: "no such host", Name: "hs.invalid", IsNotFound: true}}, Permanent, 0, false},
		{"DNS timeout", &NetError{Method: "POST", Err: &net.DNSError{Err: "timeout", Name: "hs.example", IsTimeout: true}}, Retry, 0, false},
		{"bad certificate", &NetError{Method: "GET", Err: &tls.CertificateVerificationError{Err: errors.New("x509: unknown authority")}}, Permanent, 0, false},
		{"bad secret", &hinted{op: "register x", sentinel: ErrSharedSecretMismatch, cause: &Error{Status: 403}}, Permanent, 0, false},
		{"no admin API", &hinted{op: "get user", sentinel: ErrNoAdminAPI, cause: &Error{Status: 404}}, Permanent, 0, false},
		{"invalid request", fmt.Errorf("register x: %w", ErrInvalidRequest), Refused, 0, false},
		{"something else", errors.New("boom"), Permanent, 0, false},
		{"nil", nil, Permanent, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kind, wait := Classify(tt.err)
			if kind != tt.kind || wait != tt.wait {
				t.Errorf("Classify = (%v, %v), want (%v, %v)", kind, wait, tt.kind, tt.wait)
			}
			if got := MayHaveLanded(tt.err); got != tt.mayLanded {
				t.Errorf("MayHaveLanded = %v, want %v", got, tt.mayLanded)
			}
		})
	}
}

func TestNormalizeBase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "https://matrix.example.org", want: "https://matrix.example.org"},
		{in: "https://matrix.example.org/", want: "https://matrix.example.org"},
		{in: " http://127.0.0.1:8008// ", want: "http://127.0.0.1:8008"},
		{in: "https://example.org/matrix/", want: "https://example.org/matrix"},
		{in: "matrix.example.org", wantErr: "must start with https://"},
		{in: "ftp://example.org", wantErr: "must start with https://"},
		{in: "https://", wantErr: "no host name"},
		{in: "https://admin:hunter2@example.org", wantErr: "must not contain a user name or password"},
		{in: "https://example.org/?access_token=x", wantErr: "must not have a query"},
		{in: "https://example.org/#x", wantErr: "must not have a query"},
		{in: "http://[::1", wantErr: "missing ']'"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := normalizeBase(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("normalizeBase(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q repeats the password", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("normalizeBase(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 100, "plain"},
		{"tab\tand\r\nnewline", 100, "tab and  newline"},
		{"esc\x1b[2J", 100, "esc?[2J"},
		{"bad utf8 \xff", 100, "bad utf8 ?"},
		{"real \uFFFD kept", 100, "real \uFFFD kept"},
		{"nbsp\u00a0zwsp\u200b", 100, "nbsp?zwsp?"},
		{strings.Repeat("x", 10), 5, "xxxxx…"},
	}
	for _, tt := range tests {
		if got := sanitize(tt.in, tt.max); got != tt.want {
			t.Errorf("sanitize(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}
