package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// rawResult is what a raw loop achieved.
type rawResult struct {
	conc    int
	users   int64
	errors  int64
	elapsed time.Duration
	cpu     time.Duration // of this process while the loop ran: the loop's own cost

	serverCPU time.Duration // of the no-work server meanwhile, when known
}

func (r rawResult) perSecond() float64 { return float64(r.users) / r.elapsed.Seconds() }

func (r rawResult) cpuPerUser() time.Duration { return r.cpu / time.Duration(max(1, r.users)) }

// selfCPU is the CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawLoop registers users with nothing but the two requests shared-secret
// registration needs, from conc workers for dur: GET a nonce, POST the registration
// with its HMAC. No validation, no password generation, no journal, no report, no
// encryption, no logout of the session Dendrite opens: it is the yardstick, the rate
// the server allows a client that does nothing else.
//
// With logout it also logs out the session a server opens despite inhibit_login
// (Dendrite does), as provision does: the same work on the server as provision's.
func rawLoop(ctx context.Context, base string, secret []byte, conc int, dur time.Duration, prefix string, logout bool) (rawResult, error) {
	hc := &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        conc + 4,
		MaxIdleConnsPerHost: conc + 4,
		IdleConnTimeout:     time.Minute,
	}}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var next, users, errs atomic.Int64
	var firstErr error
	var once sync.Once
	start, cpu0 := time.Now(), selfCPU()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				name := prefix + strconv.FormatInt(next.Add(1), 10)
				if err := rawRegister(ctx, hc, base, secret, name, logout); err != nil {
					if ctx.Err() != nil {
						return
					}
					errs.Add(1)
					once.Do(func() { firstErr = err })
					continue
				}
				users.Add(1)
			}
		})
	}
	wg.Wait()
	res := rawResult{conc: conc, users: users.Load(), errors: errs.Load(), elapsed: time.Since(start), cpu: selfCPU() - cpu0}
	if res.errors > 0 && res.errors*10 > res.users {
		return res, fmt.Errorf("raw loop at concurrency %d: %d errors for %d users, first: %w", conc, res.errors, res.users, firstErr)
	}
	return res, nil
}

func rawRegister(ctx context.Context, hc *http.Client, base string, secret []byte, name string, logout bool) error {
	var n struct {
		Nonce string `json:"nonce"`
	}
	if err := rawDo(ctx, hc, http.MethodGet, base+"/_synapse/admin/v1/register", nil, &n); err != nil {
		return err
	}
	const password = "raw-loop-password-24char"
	m := hmac.New(sha1.New, secret)
	for _, f := range []string{n.Nonce, name, password} {
		m.Write([]byte(f))
		m.Write([]byte{0})
	}
	m.Write([]byte("notadmin"))
	body, err := json.Marshal(map[string]any{
		"nonce": n.Nonce, "username": name, "password": password,
		"mac": hex.EncodeToString(m.Sum(nil)), "admin": false, "inhibit_login": true,
	})
	if err != nil {
		return err
	}
	var reg struct {
		AccessToken string `json:"access_token"`
	}
	if err := rawDo(ctx, hc, http.MethodPost, base+"/_synapse/admin/v1/register", body, &reg); err != nil {
		return err
	}
	if !logout || reg.AccessToken == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/_matrix/client/v3/logout", bytes.NewReader([]byte("{}")))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+reg.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("logout: HTTP %d", resp.StatusCode)
	}
	return nil
}

func rawDo(ctx context.Context, hc *http.Client, method, url string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %.200s", method, url, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
