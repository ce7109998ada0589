package matrixtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"
)

// Fault is what to do to one request instead of, or besides, answering it.
// The zero Fault answers normally. The steps apply in this order: Latency,
// ResetBefore, Status, DropResponse.
type Fault struct {
	// Status answers with this status without handling the request (a 500
	// from the server, a 502 from a proxy, a 429 from a rate limiter).
	Status int
	// Errcode makes the answer a Matrix error; "" sends a proxy's HTML page.
	Errcode string
	// RetryAfterMs goes into the body as retry_after_ms (Matrix errors only).
	RetryAfterMs int
	// RetryAfterHeader also sends Retry-After in whole seconds, rounded up,
	// as Synapse ≥ 1.92 does.
	RetryAfterHeader bool
	// NoRetryAfterBody leaves retry_after_ms out of the body: only the
	// header, if any, says how long to wait.
	NoRetryAfterBody bool
	// ResetBefore closes the connection before handling: nothing happens
	// on the server, and the client sees a reset.
	ResetBefore bool
	// DropResponse handles the request (an account IS created) and then
	// closes the connection without answering.
	DropResponse bool
	// Latency delays handling by this long (or until the client gives up).
	Latency time.Duration
	// ForgeUserID handles the request (an account IS created) and answers 200 with
	// this user_id instead of the real one: a hostile or broken server, or a proxy
	// answering for another. ForgeNoUserID answers with no user_id at all.
	ForgeUserID   string
	ForgeNoUserID bool
}

func (f Fault) zero() bool { return f == Fault{} }

// FaultN returns a Faults function that applies f to the first n requests for
// which match is true, and leaves every other request alone. It is safe for
// concurrent use.
func FaultN(n int, f Fault, match func(*http.Request) bool) func(*http.Request) Fault {
	var mu sync.Mutex
	left := n
	return func(r *http.Request) Fault {
		if !match(r) {
			return Fault{}
		}
		mu.Lock()
		defer mu.Unlock()
		if left <= 0 {
			return Fault{}
		}
		left--
		return f
	}
}

// Route matches requests by method and exact path, e.g.
// Route("POST", "/_synapse/admin/v1/register").
func Route(method, path string) func(*http.Request) bool {
	return func(r *http.Request) bool { return r.Method == method && r.URL.Path == path }
}

func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f Fault, handle http.HandlerFunc) {
	if f.zero() {
		handle(w, r)
		return
	}
	s.mu.Lock()
	s.counts.Faults++
	s.mu.Unlock()
	if f.Latency > 0 {
		// Reading the body to its end lets the server notice a client that
		// gives up (it cancels r.Context() then), so a long Latency does not
		// hold up the test's clean-up.
		data, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
		r.Body = io.NopCloser(bytes.NewReader(data))
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if f.ResetBefore {
		hangUp(w)
		return
	}
	if f.Status != 0 {
		s.writeFault(w, f)
		return
	}
	if f.DropResponse {
		handle(httptest.NewRecorder(), r)
		hangUp(w)
		return
	}
	if f.ForgeUserID != "" || f.ForgeNoUserID {
		rec := httptest.NewRecorder()
		handle(rec, r)
		var body map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		if f.ForgeNoUserID {
			delete(body, "user_id")
		} else {
			body["user_id"] = f.ForgeUserID
		}
		writeJSON(w, http.StatusOK, body)
		return
	}
	handle(w, r)
}

func (s *Server) writeFault(w http.ResponseWriter, f Fault) {
	if f.Status == http.StatusTooManyRequests {
		s.mu.Lock()
		s.counts.RateLimited++
		s.mu.Unlock()
	}
	if f.RetryAfterHeader {
		secs := (f.RetryAfterMs + 999) / 1000
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	if f.Errcode == "" {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.Status)
		text := strconv.Itoa(f.Status) + " " + http.StatusText(f.Status)
		_, _ = w.Write([]byte("<html><head><title>" + text + "</title></head><body><h1>" + text + "</h1></body></html>\n"))
		return
	}
	body := map[string]any{"errcode": f.Errcode, "error": http.StatusText(f.Status)}
	if f.Status == http.StatusTooManyRequests {
		body["error"] = "Too Many Requests"
	}
	if f.RetryAfterMs > 0 && !f.NoRetryAfterBody {
		body["retry_after_ms"] = f.RetryAfterMs
	}
	writeJSON(w, f.Status, body)
}

// hangUp closes the connection with a reset, without an answer.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("matrixtest: the connection cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST rather than FIN: a reset, as a crashed process gives
	}
	_ = conn.Close()
}
