package batch

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/provision-matrix/provision/internal/matrixtest"
	"github.com/provision-matrix/provision/internal/report"
)

// fakeClock is a clock for the throttle whose sleeps advance time.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) Sleep(_ context.Context, d time.Duration) error {
	c.now = c.now.Add(d)
	return nil
}

func newTestThrottle(perSecond float64) (*throttle, *fakeClock) {
	c := &fakeClock{now: time.Unix(1000, 0)}
	return newThrottle(perSecond, c.Now, c.Sleep), c
}

// send runs n requests through th, spaced by gap, all answered with res.
func send(t *testing.T, th *throttle, c *fakeClock, n int, gap time.Duration, res result) {
	t.Helper()
	for range n {
		tk, err := th.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.now = c.now.Add(gap)
		th.release(tk, res, 0)
	}
}

func TestThrottleCutsTo90PercentOn429AndRecovers(t *testing.T) {
	t.Parallel()
	th, c := newTestThrottle(20)
	send(t, th, c, 40, 50*time.Millisecond, accepted) // 20/s, all accepted

	th.rateLimited(3 * time.Second)
	if got := th.limit(); got != 18 {
		t.Errorf("after one 429 the rate is %v, want 18 (90%% of the 20/s sent and accepted)", got)
	}
	// Every worker waits out the pause, not just the one that got the 429.
	before := c.now
	if err := th.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if waited := c.now.Sub(before); waited < 3*time.Second {
		t.Errorf("waited %v before the next request, want at least the 3s Retry-After", waited)
	}
	for range 200 {
		th.ok()
	}
	if got := th.limit(); got != 20 {
		t.Errorf("after 200 successes the rate is %v, want it back at the configured 20", got)
	}
}

// A pool far above the server's limit lands just under what the server accepted, in
// one cut, rather than halving its way down through a storm of 429s.
func TestThrottleCutsToWhatTheServerAccepted(t *testing.T) {
	t.Parallel()
	th, c := newTestThrottle(0) // no limit
	if th.limit() != rate.Inf {
		t.Fatalf("--rate 0 gave limit %v, want no limit", th.limit())
	}
	// 200 requests/s, of which the server accepts one in four (50/s).
	for i := range 256 {
		res := rateLimited
		if i%4 == 0 {
			res = accepted
		}
		tk, _ := th.acquire(context.Background())
		c.now = c.now.Add(5 * time.Millisecond)
		if res == accepted {
			th.release(tk, res, 0)
		} else if i == 255 {
			th.release(tk, res, time.Millisecond)
		}
	}
	if l := th.limit(); l < 40 || l > 50 {
		t.Errorf("after a 429 at 200/s with 50/s accepted, the rate is %v, want 90%% of 50", l)
	}
}

// One congestion event cuts once: the 429s answering requests sent before the cut
// say nothing new.
func TestThrottleCutsOncePerCongestionEvent(t *testing.T) {
	t.Parallel()
	th, c := newTestThrottle(100)
	send(t, th, c, 50, 10*time.Millisecond, accepted)
	var inFlight []ticket
	for range 8 {
		tk, _ := th.acquire(context.Background())
		inFlight = append(inFlight, tk)
		c.now = c.now.Add(10 * time.Millisecond)
	}
	for _, tk := range inFlight {
		th.release(tk, rateLimited, time.Millisecond)
	}
	if got := th.limit(); got != 90 {
		t.Errorf("8 429s for requests sent together cut the rate to %v, want one cut to 90", got)
	}
	// Nor does the odd 429 right after the cut, while the server's bucket refills.
	send(t, th, c, 3, 12*time.Millisecond, accepted)
	send(t, th, c, 1, 12*time.Millisecond, rateLimited)
	if got := th.limit(); got != 90 {
		t.Errorf("a stray 429 just after the cut moved the rate to %v", got)
	}
	// After a healthy stretch, a 429 is a new event: the rate crept over the limit.
	send(t, th, c, cutEvery, 12*time.Millisecond, accepted)
	before := th.limit()
	send(t, th, c, 1, 12*time.Millisecond, rateLimited)
	if got := th.limit(); got >= before {
		t.Errorf("a 429 after %d successes left the rate at %v", cutEvery, got)
	}
	// And refusals outnumbering successes cut at once: still far too fast.
	before = th.limit()
	send(t, th, c, 1, 12*time.Millisecond, accepted)
	send(t, th, c, cutStorm, 12*time.Millisecond, rateLimited)
	if got := th.limit(); got >= before {
		t.Errorf("%d 429s in a row left the rate at %v", cutStorm, got)
	}
}

func TestThrottleUnlimitedBecomesLimitedOn429(t *testing.T) {
	t.Parallel()
	th, c := newTestThrottle(0)
	send(t, th, c, 40, 25*time.Millisecond, accepted) // about 40/s
	th.rateLimited(time.Second)
	if l := th.limit(); l == rate.Inf || l > 38 || l < 34 {
		t.Errorf("after a 429 with no limit set, the rate is %v, want 90%% of the observed 40/s", l)
	}
}

// The first 429s of a run, before enough successes tell what the server accepts,
// halve the rate: a handful of successes is no measure of the server.
func TestThrottleHalvesUntilTheAcceptedRateIsKnown(t *testing.T) {
	t.Parallel()
	th, c := newTestThrottle(100)
	send(t, th, c, acceptedAtLeast-1, 10*time.Millisecond, accepted)
	th.rateLimited(time.Millisecond)
	if got := th.limit(); got < 49 || got > 51 {
		t.Errorf("after a 429 with %d successes the rate is %v, want 50 (halved)", acceptedAtLeast-1, got)
	}
}

// adaptiveRun sends requests through a to a simulated server of the given capacity:
// up to capacity requests at once take service each; beyond, requests queue, so
// latency grows with the requests in flight while throughput stays at
// capacity/service. It runs for the given simulated time and returns the limit.
func adaptiveRun(a *adaptive, capacity int, service, d time.Duration) float64 {
	now := time.Unix(1000, 0)
	for end := now.Add(d); now.Before(end); {
		n := a.slots()
		latency := service
		if n > capacity {
			latency = service * time.Duration(n) / time.Duration(capacity)
		}
		// n in flight: one finishes every latency/n, having started latency ago.
		now = now.Add(latency / time.Duration(n))
		_ = a.acquire(context.Background())
		a.release(now.Add(-latency), latency, accepted)
	}
	return a.current()
}

// --rate auto finds the server's capacity: the limit grows while latency stays flat
// and settles where a queue forms, never at 1 or the pool.
func TestAdaptiveFindsTheServersCapacity(t *testing.T) {
	t.Parallel()
	for _, capacity := range []int{2, 8, 30} {
		a := newAdaptive(256)
		got := adaptiveRun(a, capacity, 50*time.Millisecond, 10*time.Minute)
		// It oscillates above the knee: up while latency is flat (up to twice the
		// unloaded), then probing on, and back a tenth when more requests in flight
		// do not finish more per second. Throughput is the server's all along; the
		// price of probing is latency, up to about three times the unloaded.
		hi := 3*float64(capacity) + 2
		if got < float64(capacity)*autoBackoff || got > hi {
			t.Errorf("server taking %d at once: limit settled at %.1f, want between %.1f and %.1f", capacity, got, float64(capacity)*autoBackoff, hi)
		}
	}
}

// A server whose latency never grows gets the whole pool; a 429 cuts the limit by a
// quarter.
func TestAdaptiveFlatLatencyAnd429(t *testing.T) {
	t.Parallel()
	a := newAdaptive(64)
	if got := adaptiveRun(a, 1000, 20*time.Millisecond, time.Minute); got != 64 {
		t.Errorf("flat latency: limit %v, want the pool's 64", got)
	}
	_ = a.acquire(context.Background())
	a.release(time.Unix(5000, 0), time.Millisecond, rateLimited)
	if got := a.current(); got != 48 {
		t.Errorf("after a 429: limit %v, want 48", got)
	}
}

// Latency that grows while throughput grows too (a client and server sharing a busy
// CPU) is no reason to stop: the limit climbs while more in flight finish more per
// second.
func TestAdaptiveFollowsThroughputPastFlatLatency(t *testing.T) {
	t.Parallel()
	a := newAdaptive(64)
	now := time.Unix(1000, 0)
	for end := now.Add(time.Minute); now.Before(end); {
		n := a.slots()
		// Latency grows as the square root of the requests in flight, so
		// throughput (n / latency) keeps growing with n.
		latency := time.Duration(float64(time.Millisecond) * math.Sqrt(float64(n)) * 4)
		now = now.Add(latency / time.Duration(n))
		_ = a.acquire(context.Background())
		a.release(now.Add(-latency), latency, accepted)
	}
	if got := a.current(); got < 48 {
		t.Errorf("throughput still growing with concurrency, yet the limit stopped at %.1f", got)
	}
}

// A server that slows down for good drives the limit to 1, where the new unloaded
// latency is learned, and the limit grows again from there.
func TestAdaptiveRelearnsASlowerServer(t *testing.T) {
	t.Parallel()
	a := newAdaptive(64)
	adaptiveRun(a, 8, 10*time.Millisecond, time.Minute)
	got := adaptiveRun(a, 8, 100*time.Millisecond, 10*time.Minute) // ten times slower, same capacity
	if got < 8*autoBackoff {
		t.Errorf("after the server slowed down the limit is %.1f, want it back at its capacity 8", got)
	}
}

// Waiters get slots in arrival order, and a cancelled wait gives its slot on.
func TestAdaptiveSlots(t *testing.T) {
	t.Parallel()
	a := newAdaptive(1)
	if err := a.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error)
	go func() { cancelled <- a.acquire(ctx) }()
	got := make(chan int, 2)
	go func() {
		for a.waiting() < 1 {
			time.Sleep(time.Millisecond)
		}
		_ = a.acquire(context.Background())
		got <- 2
	}()
	for a.waiting() < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-cancelled; err == nil {
		t.Error("a cancelled wait got a slot")
	}
	a.cancel() // the first slot, never used
	if <-got != 2 {
		t.Error("the second waiter did not get the slot")
	}
}

// A run with --rate auto creates everyone, in roster order, and never has more users
// in the pool than the admission gate allows.
func TestAutoRateRun(t *testing.T) {
	t.Parallel()
	f := setup(t, matrixtest.Options{}, "")
	f.run.Opts.AutoRate = true
	f.run.Opts.Concurrency = 256
	us := users(300)
	var mu sync.Mutex
	maxPool, maxAllowed := 0, 0
	f.rec.onDeliver = func() { // runs while the user is in the pool
		mu.Lock()
		defer mu.Unlock()
		c := f.run.engine.writes.conc
		c.mu.Lock()
		maxPool, maxAllowed = max(maxPool, c.pool.held), max(maxAllowed, c.poolSize())
		c.mu.Unlock()
	}
	sum, err := f.run.Run(context.Background(), source(us))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts[report.Created] != len(us) {
		t.Fatalf("summary %s, want all %d created", sum, len(us))
	}
	f.assertConverged(t, us)
	for i, r := range f.rec.rows {
		if r.Localpart != us[i].Localpart {
			t.Fatalf("row %d is %s, want %s", i, r.Localpart, us[i].Localpart)
		}
	}
	if maxPool > maxAllowed {
		t.Errorf("%d users in the pool at once, the gate allowed %d", maxPool, maxAllowed)
	}
}

// A long Retry-After slows the pool by itself; the rate measured across such a pause
// reflects the pause, not the server, and must not drive the cut down to nothing.
func TestThrottleLongPauseDoesNotDepressTheCut(t *testing.T) {
	t.Parallel()
	th, c := newTestThrottle(0) // no limit
	send(t, th, c, 40, 10*time.Millisecond, accepted)
	for range 3 * cutStorm {
		tk, err := th.acquire(context.Background()) // waits out the last pause
		if err != nil {
			t.Fatal(err)
		}
		c.now = c.now.Add(time.Millisecond)
		th.release(tk, rateLimited, time.Second)
	}
	if got := th.limit(); got < 10 {
		t.Errorf("after 429s with a 1 s Retry-After the rate is %v/s: the pauses, not the server, set it", got)
	}
}
