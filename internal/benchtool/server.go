package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// serverName is the server name of the no-work server's user IDs.
const serverName = "bench.localhost"

// noWork is a homeserver that does no work: it hands out nonces and "creates" every
// account it is asked for at once, without checking the MAC or keeping anything. It
// answers what provision's preflight reads, the way Synapse does. Two knobs turn it
// into a server with limits:
//
//   - limit: a token bucket in front of registration answering 429 M_LIMIT_EXCEEDED
//     with retry_after_ms, as Synapse's rate limiter or a proxy does;
//   - workers and service: at most workers registrations at a time, each taking
//     service (a sleep, not CPU), as a server bound by password hashing behaves:
//     beyond its capacity, more requests only wait longer.
type noWork struct {
	lim     *rate.Limiter // nil: no 429s
	slots   chan struct{} // nil: unbounded
	service time.Duration
	record  bool

	nonce      atomic.Uint64
	registered atomic.Int64
	limited    atomic.Int64

	mu       sync.Mutex
	arrivals []int64 // unix ns of each registration POST, when recording
	accepted []int64 // of each one answered 200
}

// stats is what GET /_bench/stats answers.
type stats struct {
	Registered int64   `json:"registered"`
	Limited    int64   `json:"limited"`
	Arrivals   []int64 `json:"arrivals,omitempty"`
	Accepted   []int64 `json:"accepted,omitempty"`
}

func (s *noWork) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method + " " + r.URL.Path {
	case "GET /_matrix/client/versions":
		writeJSON(w, 200, `{"versions":["v1.1","v1.11"]}`)
	case "GET /_matrix/key/v2/server":
		writeJSON(w, 200, `{"server_name":"`+serverName+`"}`)
	case "GET /_matrix/client/v3/password_policy":
		writeJSON(w, 200, `{}`)
	case "GET /_synapse/admin/v1/register":
		writeJSON(w, 200, `{"nonce":"n`+strconv.FormatUint(s.nonce.Add(1), 36)+`"}`)
	case "POST /_synapse/admin/v1/register":
		s.register(w, r)
	case "GET /_bench/stats":
		st := stats{Registered: s.registered.Load(), Limited: s.limited.Load()}
		s.mu.Lock()
		st.Arrivals, st.Accepted = s.arrivals, s.accepted
		s.mu.Unlock()
		b, _ := json.Marshal(st)
		writeJSON(w, 200, string(b))
	case "POST /_bench/reset":
		s.registered.Store(0)
		s.limited.Store(0)
		s.mu.Lock()
		s.arrivals, s.accepted = nil, nil
		s.mu.Unlock()
		writeJSON(w, 200, `{}`)
	default:
		writeJSON(w, 404, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`)
	}
}

func (s *noWork) register(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	var req struct {
		Username string `json:"username"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil || json.Unmarshal(body, &req) != nil {
		writeJSON(w, 400, `{"errcode":"M_NOT_JSON","error":"Content not JSON."}`)
		return
	}
	if req.Username == "" {
		// What Synapse answers to provision's check of the secret (before any limit,
		// so that the check is not what a storm hits).
		writeJSON(w, 400, `{"errcode":"M_INVALID_USERNAME","error":"Invalid username"}`)
		return
	}
	if s.record {
		s.mu.Lock()
		s.arrivals = append(s.arrivals, now.UnixNano())
		s.mu.Unlock()
	}
	if s.lim != nil {
		if res := s.lim.ReserveN(now, 1); !res.OK() || res.DelayFrom(now) > 0 {
			d := res.DelayFrom(now)
			res.CancelAt(now)
			s.limited.Add(1)
			ms := max(1, int(math.Ceil(float64(d)/float64(time.Millisecond))))
			writeJSON(w, 429, `{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":`+strconv.Itoa(ms)+`}`)
			return
		}
	}
	if s.slots != nil {
		s.slots <- struct{}{}
		time.Sleep(s.service)
		<-s.slots
	}
	s.registered.Add(1)
	if s.record {
		s.mu.Lock()
		s.accepted = append(s.accepted, time.Now().UnixNano())
		s.mu.Unlock()
	}
	// inhibit_login honoured, as Synapse does: no access token, nothing to log out.
	writeJSON(w, 200, `{"user_id":"@`+req.Username+`:`+serverName+`","home_server":"`+serverName+`"}`)
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// serveMain is `provision-bench serve`: it runs a no-work server on 127.0.0.1 and
// prints its URL on the first line of standard output.
func serveMain(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	limit := fs.Float64("limit", 0, "answer 429 above this many registrations per second (0 = never)")
	burst := fs.Int("burst", 1, "the rate limiter's burst")
	workers := fs.Int("workers", 0, "registrations handled at once (0 = unbounded)")
	service := fs.Duration("service", 0, "time each registration takes, with -workers")
	record := fs.Bool("record", false, "record when each registration arrives (for GET /_bench/stats)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s := &noWork{record: *record, service: *service}
	if *limit > 0 {
		s.lim = rate.NewLimiter(rate.Limit(*limit), *burst)
	}
	if *workers > 0 {
		s.slots = make(chan struct{}, *workers)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("http://%s\n", ln.Addr())
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
