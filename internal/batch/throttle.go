package batch

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// throttle is the pool's shared brake: a token bucket that every worker waits on
// before it sends a request, plus a pause that a 429 imposes on everyone. A 429 tells
// us the server (or a proxy in front of it) is over its limit; slowing only the worker
// that got it would let the others keep hammering, so the whole pool waits out
// Retry-After and lowers its rate, then probes back up slowly (AIMD, as TCP does).
//
// The cut aims at what the server showed it accepts rather than at a fraction of what
// was sent: the new rate is 90% of the lower of the rate sent and the rate of recent
// successes (halving until enough successes tell that rate). A pool that ran far
// above the limit thus lands just under it in one step instead of halving its way
// down through a storm of 429s, and one that was just over it gives up a tenth, not
// half. One congestion event cuts once: a 429 answering a request that started before
// the last cut says nothing new, and neither do the odd 429s right after a cut, while
// the server's bucket refills (a request arriving a little early is refused then,
// whatever our rate). So the next cut waits for 32 successes (the rate has crept above
// the limit again), unless refusals outnumber successes (still far too fast, as at the
// start of a run with no --rate). Above the cut the rate grows by 1% every 8
// successes: few requests are refused, and the rate stays near the server's. (A
// faster climb far from the last cut, as TCP CUBIC does, was tried: it came back from
// an early cut that undershot sooner, but doubled the share of requests refused.)
//
// With --rate auto the throttle also bounds the requests in flight, adaptively (see
// adaptive in auto.go).
type throttle struct {
	mu         sync.Mutex
	lim        *rate.Limiter
	target     rate.Limit // what the operator asked for; rate.Inf = no limit
	pauseUntil time.Time
	lastCut    time.Time // when the rate was last cut
	longPause  time.Time // when the last long pause (Retry-After) ends
	okSinceCut int       // successes since then
	noSinceCut int       // 429s since then
	okStreak   int
	starts     ring // request start times: the rate sent
	oks        ring // success times: the rate the server accepts
	conc       *adaptive
	now        func() time.Time
	sleep      func(context.Context, time.Duration) error
}

const (
	minRate      = rate.Limit(0.2) // never slower than one request per 5 s
	cutTo        = 0.9             // of the rate the server accepted, after a 429
	recoverAfter = 8               // successes in a row before the rate is raised again
	recoverBy    = 1.01            // the factor it is raised by
	cutEvery     = 32              // successes between cuts, unless 429s outnumber them
	cutStorm     = 4               // 429s that, outnumbering successes, cut at once

	acceptedSpan    = 10 * time.Second // the successes that measure the rate accepted
	acceptedAtLeast = 16               // at least this many
	sentSpan        = 2 * time.Second  // the starts that measure the rate sent
	longPause       = 100 * time.Millisecond
	defaultPause    = time.Second     // when a 429 names no wait
	maxServerWait   = 5 * time.Minute // a Retry-After beyond this is clamped
)

// ring holds the last few event times, to measure a rate.
type ring struct {
	t [64]time.Time
	n int
}

func (r *ring) add(t time.Time) { r.t[r.n%len(r.t)] = t; r.n++ }

// rate is the events per second over the recent events, or 0 when fewer than atLeast.
// Events older than span before now do not count: a burst long past is not today's
// rate.
func (r *ring) rate(now time.Time, span time.Duration, atLeast int) rate.Limit {
	k := min(r.n, len(r.t))
	newest := r.t[(r.n-1+len(r.t))%len(r.t)]
	i := 1
	for ; i < k; i++ {
		if now.Sub(r.t[(r.n-1-i+2*len(r.t))%len(r.t)]) > span {
			break
		}
	}
	if i < max(2, atLeast) {
		return 0
	}
	oldest := r.t[(r.n-i+2*len(r.t))%len(r.t)]
	secs := newest.Sub(oldest).Seconds()
	if secs <= 0 {
		return rate.Limit(i) / rate.Limit(0.001)
	}
	return rate.Limit(float64(i-1) / secs)
}

func newThrottle(perSecond float64, now func() time.Time, sleep func(context.Context, time.Duration) error) *throttle {
	t := &throttle{target: rate.Inf, now: now, sleep: sleep}
	if perSecond > 0 {
		t.target = rate.Limit(perSecond)
	}
	// Burst 1: requests are spread evenly rather than sent in clumps, which is what
	// both a bcrypt-bound server and a proxy's leaky bucket want.
	t.lim = rate.NewLimiter(t.target, 1)
	return t
}

// ticket is one request let through by acquire, to be handed back to release.
type ticket struct {
	start time.Time
	slot  bool // holds one of adaptive's slots
}

// result is how a request went, for release.
type result int

const (
	accepted    result = iota // the server answered (even with a refusal): it is not over its limit
	rateLimited               // 429
	noAnswer                  // no answer (network error, 5xx): says nothing of the limit
)

// acquire blocks until the caller may send a request, or ctx ends. The ticket must
// be released.
func (t *throttle) acquire(ctx context.Context) (ticket, error) {
	if t.conc == nil {
		return t.acquireRate(ctx)
	}
	// The slot first: a token taken while waiting for a slot would be spent on
	// nothing, and the rate's spacing lost.
	if err := t.conc.acquire(ctx); err != nil {
		return ticket{}, err
	}
	tk, err := t.acquireRate(ctx)
	if err != nil {
		t.conc.cancel()
		return ticket{}, err
	}
	tk.slot = true
	return tk, nil
}

// release hands a ticket back with how its request went; retryAfter is the 429's.
func (t *throttle) release(tk ticket, res result, retryAfter time.Duration) {
	if tk.slot {
		t.conc.release(tk.start, t.now().Sub(tk.start), res)
	}
	switch res {
	case accepted:
		t.ok()
	case rateLimited:
		t.limited(tk.start, retryAfter)
	}
}

// wait is acquire for callers that do not hand their ticket back (the admin
// runner): they get the rate limit and the pauses, never an adaptive slot.
func (t *throttle) wait(ctx context.Context) error {
	_, err := t.acquireRate(ctx)
	return err
}

// acquireRate waits out a pause, then for the rate limiter.
func (t *throttle) acquireRate(ctx context.Context) (ticket, error) {
	for {
		t.mu.Lock()
		pause := t.pauseUntil.Sub(t.now())
		t.mu.Unlock()
		if pause <= 0 {
			break
		}
		if err := t.sleep(ctx, pause); err != nil {
			return ticket{}, err
		}
	}
	// Reserve on the throttle's clock and sleep through its seam, so that tests
	// run on a fake clock.
	now := t.now()
	res := t.lim.ReserveN(now, 1)
	if !res.OK() {
		return ticket{}, errors.New("rate limiter refused a request") // only with a zero burst
	}
	if d := res.DelayFrom(now); d > 0 {
		if err := t.sleep(ctx, d); err != nil {
			res.CancelAt(t.now())
			return ticket{}, err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tk := ticket{start: t.now()}
	t.starts.add(tk.start)
	return tk, nil
}

// rateLimited slows the whole pool after a 429, for a caller of wait: its request is
// taken to have started just now, so every call is a congestion event of its own.
func (t *throttle) rateLimited(retryAfter time.Duration) {
	t.limited(t.now(), retryAfter)
}

// limited pauses the pool for retryAfter and, unless the request started before the
// last cut, cuts the rate.
func (t *throttle) limited(start time.Time, retryAfter time.Duration) {
	if retryAfter <= 0 {
		retryAfter = defaultPause
	}
	retryAfter = min(retryAfter, maxServerWait)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	// Rates measured across a long pause reflect the pause, not the server: the cut
	// below uses them only when the last long pause ended before their span.
	sentTrusted := now.Sub(t.longPause) > sentSpan
	okTrusted := now.Sub(t.longPause) > acceptedSpan
	if until := now.Add(retryAfter); until.After(t.pauseUntil) {
		t.pauseUntil = until
	}
	if retryAfter >= longPause && now.Add(retryAfter).After(t.longPause) {
		t.longPause = now.Add(retryAfter)
	}
	t.okStreak = 0
	if start.Before(t.lastCut) {
		return // an answer to a request sent at the rate already cut
	}
	t.noSinceCut++
	if !t.lastCut.IsZero() && t.okSinceCut < cutEvery && (t.noSinceCut < cutStorm || t.noSinceCut < t.okSinceCut) {
		return // the bucket refilling after the last cut
	}
	sent := t.lim.Limit()
	if obs := t.starts.rate(now, sentSpan, 2); sentTrusted && obs > 0 && obs < sent {
		sent = obs
	}
	if sent == rate.Inf {
		return // nothing trustworthy to cut from: the pause does the slowing
	}
	// The rate the server accepted is trusted once it rests on enough successes; until
	// then (the first 429s of a run) the rate is halved, as classic AIMD does: a few
	// successes, spread out by a busy CPU, can make the server look much slower than
	// it is, and climbing back from there takes long.
	next := sent / 2
	if ok := t.oks.rate(now, acceptedSpan, acceptedAtLeast); okTrusted && ok > 0 {
		next = min(sent, ok) * cutTo
	}
	next = max(next, minRate)
	if next < t.lim.Limit() {
		t.lim.SetLimitAt(now, next)
	}
	t.lastCut = now
	t.okSinceCut, t.noSinceCut = 0, 0
}

// ok records a request the server answered and lets the rate recover.
func (t *throttle) ok() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.oks.add(now)
	t.okSinceCut++
	cur := t.lim.Limit()
	if cur >= t.target {
		return
	}
	t.okStreak++
	if t.okStreak < recoverAfter {
		return
	}
	t.okStreak = 0
	next := max(cur*recoverBy, cur+0.05)
	if t.target != rate.Inf && next > t.target {
		next = t.target
	}
	if t.target == rate.Inf {
		if obs := t.starts.rate(now, sentSpan, 2); obs > 0 && next > 4*obs+1 {
			// Unlimited: once the rate is well above what the pool achieves, stop
			// limiting.
			next = rate.Inf
		}
	}
	t.lim.SetLimitAt(now, next)
}

// limit is the current rate (for logs and tests).
func (t *throttle) limit() rate.Limit { return t.lim.Limit() }

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
