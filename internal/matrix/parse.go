package matrix

// Reading a server's error answer: the body, Retry-After, sanitising its text.

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	sanitizepkg "github.com/provision-matrix/provision/internal/sanitize"
)

// parseError turns a non-2xx answer into an *Error. Synapse and Dendrite put
// the text in "error"; Dendrite's bare 500s use "message". Fields of the wrong
// JSON type are ignored one by one rather than losing the whole body.
func parseError(status int, h http.Header, body []byte, now time.Time) *Error {
	e := &Error{Status: status}
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) == nil {
		e.Errcode = jsonString(fields["errcode"])
		e.Message = jsonString(fields["error"])
		if e.Message == "" {
			e.Message = jsonString(fields["message"])
		}
		var ms float64
		if raw, ok := fields["retry_after_ms"]; ok && json.Unmarshal(raw, &ms) == nil && ms > 0 {
			e.RetryAfter = durationMillis(ms)
		}
	}
	if e.RetryAfter == 0 {
		e.RetryAfter = parseRetryAfter(h.Get("Retry-After"), now)
	}
	if status >= 300 && status < 400 && e.Message == "" {
		if loc := h.Get("Location"); loc != "" {
			e.Message = "redirected to " + loc + "; use that URL as the homeserver"
		}
	}
	return e
}

// maxRetryAfter caps what a server may ask for, so that a garbled header
// cannot stall a run for years; the batch package applies its own ceiling.
const maxRetryAfter = 24 * time.Hour

func durationMillis(ms float64) time.Duration {
	if ms >= float64(maxRetryAfter/time.Millisecond) {
		return maxRetryAfter
	}
	return time.Duration(math.Ceil(ms * float64(time.Millisecond)))
}

// ParseRetryAfter reads a Retry-After header: delay-seconds (what Synapse
// sends) or an HTTP-date (what some proxies send), capped at 24 hours. Anything
// else is 0. The MAS client reads its answers' header with it too.
func ParseRetryAfter(v string, now time.Time) time.Duration { return parseRetryAfter(v, now) }

func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs >= int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d <= 0 {
			return 0
		}
		return min(d, maxRetryAfter)
	}
	return 0
}

func jsonString(raw json.RawMessage) string {
	var s string
	if raw == nil || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// sanitize keeps at most max runes of s and replaces control characters and
// invalid UTF-8, so that a server's text cannot drive the terminal.
func sanitize(s string, max int) string { return sanitizepkg.Line(s, max) }
