package batch

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// throttle is the pool's shared brake: a token bucket that every worker waits on
// before it sends a request, plus a pause that a 429 imposes on everyone. A 429 tells
// us the server (or a proxy in front of it) is over its limit; slowing only the worker
// that got it would let the others keep hammering, so the whole pool halves its rate
// and waits out Retry-After, then recovers additively (AIMD, as TCP does).
type throttle struct {
	mu         sync.Mutex
	lim        *rate.Limiter
	target     rate.Limit // what the operator asked for; rate.Inf = no limit
	pauseUntil time.Time
	okStreak   int
	starts     [32]time.Time // recent request start times, to estimate the rate when unlimited
	nstarts    int
	now        func() time.Time
	sleep      func(context.Context, time.Duration) error
}

const (
	minRate       = rate.Limit(0.2) // never slower than one request per 5 s
	recoverAfter  = 8               // successes in a row before the rate is raised again
	defaultPause  = time.Second     // when a 429 names no wait
	maxServerWait = 5 * time.Minute // a Retry-After beyond this is clamped
)

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

// wait blocks until the caller may send a request, or ctx ends.
func (t *throttle) wait(ctx context.Context) error {
	for {
		t.mu.Lock()
		pause := t.pauseUntil.Sub(t.now())
		t.mu.Unlock()
		if pause <= 0 {
			break
		}
		if err := t.sleep(ctx, pause); err != nil {
			return err
		}
	}
	if err := t.lim.WaitN(ctx, 1); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	t.mu.Lock()
	t.starts[t.nstarts%len(t.starts)] = t.now()
	t.nstarts++
	t.mu.Unlock()
	return nil
}

// rateLimited slows the whole pool after a 429.
func (t *throttle) rateLimited(retryAfter time.Duration) {
	if retryAfter <= 0 {
		retryAfter = defaultPause
	}
	retryAfter = min(retryAfter, maxServerWait)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if until := now.Add(retryAfter); until.After(t.pauseUntil) {
		t.pauseUntil = until
	}
	cur := t.lim.Limit()
	if cur == rate.Inf {
		cur = t.observedLocked()
	}
	next := max(cur/2, minRate)
	if next < t.lim.Limit() {
		t.lim.SetLimitAt(now, next)
	}
	t.okStreak = 0
}

// ok records a request the server accepted and lets the rate recover.
func (t *throttle) ok() {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.lim.Limit()
	if cur >= t.target {
		return
	}
	t.okStreak++
	if t.okStreak < recoverAfter {
		return
	}
	t.okStreak = 0
	// Additive increase by a tenth of the current rate, at least one request per second.
	next := cur + max(cur/10, 1)
	if t.target != rate.Inf && next > t.target {
		next = t.target
	}
	if t.target == rate.Inf && next > 4*t.observedLocked()+1 {
		// Unlimited: once the rate is well above what the pool achieves, stop limiting.
		next = rate.Inf
	}
	t.lim.SetLimitAt(t.now(), next)
}

// limit is the current rate (for logs and tests).
func (t *throttle) limit() rate.Limit { return t.lim.Limit() }

// observedLocked estimates the request rate from recent start times.
func (t *throttle) observedLocked() rate.Limit {
	n := min(t.nstarts, len(t.starts))
	if n < 2 {
		return 1
	}
	newest := t.starts[(t.nstarts-1)%len(t.starts)]
	oldest := t.starts[(t.nstarts-n)%len(t.starts)]
	span := newest.Sub(oldest).Seconds()
	if span <= 0 {
		return rate.Limit(n)
	}
	return rate.Limit(float64(n-1) / span)
}

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
