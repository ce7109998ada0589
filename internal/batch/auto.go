package batch

import (
	"context"
	"sync"
	"time"
)

// adaptive bounds the requests in flight with --rate auto: it finds, while the run
// goes on, how many the server takes before a queue forms, and keeps near that.
//
// A homeserver registering users is bound by password hashing: up to its number of
// cores, more requests in flight mean more users per second at the same latency;
// beyond, they only wait in its queue, and each request takes longer. So latency is
// the first signal, as in TCP Vegas and the adaptive concurrency limiters of service
// meshes: the mean latency of a window of requests is compared with the lowest such
// mean seen (the server unloaded). Up to twice that counts as flat, and the limit
// grows: from one request, doubling at first (slow start), then by an eighth per
// window. A 429 cuts it by a quarter.
//
// Latency that grows is not always a queue at the server, though: when the client
// and the server share a busy CPU, every request takes longer as more run at once,
// yet more of them still finish per second. So past the flat zone, throughput
// decides: an increase that bought at least 2% more completions per second is
// followed by another (a doubling, if it bought 10%), one that did not is undone (a
// tenth off); a decrease that cost 2% is undone, one that cost nothing is followed by
// another. The limit thus hovers just past the knee: against a server bound by
// hashing, at up to about three times its capacity (latency up to three times the
// unloaded one, throughput the server's own); where the client is the bottleneck, as
// high as more in flight still pays.
//
// A window is as many requests as the limit allows at once (at least 8), and at
// least 200 ms when throughput is to be compared (a busy machine makes shorter ones
// too noisy); only requests started since the last change count for its latency, so
// a change is judged by its own effect.
//
// The limit stays between 1 and the pool's size (--concurrency): a server whose
// latency never grows is simply given the whole pool. If the server itself slows down
// for good, the limit shrinks to 1, where no queue can be of our making, and the
// unloaded latency is learned again there. Users are admitted to the pool only about
// twice as many as the limit (admit): a user's intent is journaled before it waits
// for a request slot, and every intent left pending by an interrupted run costs the
// server a login (a password hash) on the next one.
type adaptive struct {
	mu       sync.Mutex
	limit    float64
	max      float64
	requests gate          // request slots: capacity slots()
	pool     gate          // users admitted to the pool: capacity poolSize()
	base     time.Duration // the lowest window mean: the server's unloaded latency
	since    time.Time     // only requests started since the last change count
	sum      time.Duration
	n        int
	done     int     // requests finished since the last change, whenever started
	prevX    float64 // completions per second in the previous long window; 0 if none
	lastUp   bool    // the last change raised the limit
	slow     bool    // slow start: no queue seen yet

	// judged, if set, sees every judgement (for the debug log).
	judged func(limit float64, latency, unloaded time.Duration, perSecond float64)
}

const (
	autoStart     = 1   // requests in flight at first: the unloaded latency is seen
	autoTolerance = 2.0 // latency up to this many times the unloaded one counts as flat
	autoWindow    = 8   // requests at least per judgement
	autoMinWindow = 200 * time.Millisecond
	autoGain      = 1.02 // a change that moves throughput less than this did nothing
	autoBigGain   = 1.10 // an increase that bought this much is doubled, as in slow start
	autoBackoff   = 0.9  // factor on the limit when a queue has formed
	autoCut429    = 0.75
)

func newAdaptive(maxInFlight int) *adaptive {
	m := float64(max(1, maxInFlight))
	return &adaptive{limit: min(autoStart, m), max: m, slow: true}
}

// acquire waits for a request slot.
func (a *adaptive) acquire(ctx context.Context) error {
	return a.enter(ctx, &a.requests, a.slots, a.cancel)
}

// admit waits until one more user may enter the pool.
func (a *adaptive) admit(ctx context.Context) error {
	return a.enter(ctx, &a.pool, a.poolSize, a.leave)
}

// gate is a counting semaphore with a first-come-first-served queue, whose capacity
// the limiter changes as it runs. Its fields are guarded by adaptive.mu.
type gate struct {
	held  int
	queue []chan struct{} // in arrival order
}

// enter waits for a place in g (capacity says how many there are now); giveBack
// returns a place that was granted after ctx ended.
func (a *adaptive) enter(ctx context.Context, g *gate, capacity func() int, giveBack func()) error {
	a.mu.Lock()
	if len(g.queue) == 0 && g.held < capacity() {
		g.held++
		a.mu.Unlock()
		return nil
	}
	ch := make(chan struct{}, 1)
	g.queue = append(g.queue, ch)
	a.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		a.mu.Lock()
		for i, w := range g.queue {
			if w == ch {
				g.queue = append(g.queue[:i], g.queue[i+1:]...)
				a.mu.Unlock()
				return ctx.Err()
			}
		}
		a.mu.Unlock()
		giveBack() // granted meanwhile: hand the place on
		return ctx.Err()
	}
}

// grantLocked hands free places to the queue, first come first served.
func (g *gate) grantLocked(capacity int) {
	for len(g.queue) > 0 && g.held < capacity {
		ch := g.queue[0]
		g.queue = g.queue[1:]
		g.held++
		ch <- struct{}{}
	}
}

// leave is a user leaving the pool.
func (a *adaptive) leave() {
	a.mu.Lock()
	a.pool.held--
	a.grantLocked()
	a.mu.Unlock()
}

// poolSize is how many users may be in the pool: the requests in flight, as many
// again between journal and handoff, and a few for the feeder's lead.
func (a *adaptive) poolSize() int { return min(int(a.max), 2*a.slots()+4) }

// cancel returns a slot whose request was never sent.
func (a *adaptive) cancel() {
	a.mu.Lock()
	a.requests.held--
	a.grantLocked()
	a.mu.Unlock()
}

// release returns the slot of a request sent at start that took latency.
func (a *adaptive) release(start time.Time, latency time.Duration, res result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests.held--
	end := start.Add(latency)
	switch {
	case res == rateLimited:
		a.change(max(1, a.limit*autoCut429), end)
		a.prevX = 0
	case start.Before(a.since):
		a.done++ // sent under the previous limit: not this one's latency
	default:
		a.done++
		a.sum += latency
		a.n++
		if a.n >= max(autoWindow, int(a.limit)) {
			a.judge(end)
		}
	}
	a.grantLocked()
}

// judge compares the window's mean latency with the unloaded one and, past the flat
// zone, its throughput with the previous window's.
func (a *adaptive) judge(now time.Time) {
	mean := a.sum / time.Duration(a.n)
	flat := a.base == 0 || float64(mean) <= autoTolerance*float64(a.base)
	if !flat && now.Sub(a.since) < autoMinWindow {
		return // throughput is compared over longer windows: let this one grow
	}
	long := now.Sub(a.since) >= autoMinWindow
	x := float64(a.done) / now.Sub(a.since).Seconds()
	if a.base == 0 || mean < a.base {
		a.base = mean
	}
	up, fast := false, a.slow
	switch {
	case flat:
		up = true
	case a.limit <= 1:
		// One request at a time queues behind nothing of ours: the server has
		// slowed down. Learn its new unloaded latency.
		a.base = mean
	case a.prevX == 0:
		up = true // nothing to compare with yet: explore
	case a.lastUp:
		up = x >= a.prevX*autoGain // the increase paid
		fast = x >= a.prevX*autoBigGain
	default:
		up = x*autoGain < a.prevX // the decrease cost
	}
	a.prevX = 0
	if long {
		a.prevX = x // only long windows are worth comparing
	}
	if a.judged != nil {
		a.judged(a.limit, mean, a.base, x)
	}
	switch {
	case !up:
		a.change(max(1, a.limit*autoBackoff), now)
	case fast:
		a.change(min(a.max, a.limit*2), now)
	default:
		a.change(min(a.max, a.limit+max(1, a.limit/8)), now)
	}
}

// change sets a new limit, from now on, and starts a new window.
func (a *adaptive) change(limit float64, now time.Time) {
	if limit < a.limit {
		a.slow = false
	}
	a.lastUp = limit > a.limit
	a.limit = limit
	a.since = now
	a.sum, a.n, a.done = 0, 0, 0
}

func (a *adaptive) slots() int { return max(1, int(a.limit)) }

// grantLocked hands free slots, and places in the pool, to waiters, first come first
// served.
func (a *adaptive) grantLocked() {
	a.requests.grantLocked(a.slots())
	a.pool.grantLocked(a.poolSize())
}

// current is the limit now (for logs and tests).
func (a *adaptive) current() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.limit
}

// waiting is the number of waiters (for tests).
func (a *adaptive) waiting() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.requests.queue)
}
