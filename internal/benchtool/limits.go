package main

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// acceptedRate summarises the registrations a server accepted, from their timestamps.
type acceptedRate struct {
	n                    int
	mean                 float64 // per second, first to last
	minSecond, maxSecond int     // fewest and most in one whole second
}

func measureAccepted(ns []int64) acceptedRate {
	if len(ns) < 2 {
		return acceptedRate{n: len(ns)}
	}
	ts := slices.Clone(ns)
	slices.Sort(ts)
	first, last := ts[0], ts[len(ts)-1]
	r := acceptedRate{n: len(ts), mean: float64(len(ts)-1) / (float64(last-first) / 1e9), minSecond: math.MaxInt}
	whole := int((last - first) / 1e9)
	counts := make([]int, whole)
	for _, t := range ts {
		if i := int((t - first) / 1e9); i < whole {
			counts[i]++
		}
	}
	for _, c := range counts {
		r.minSecond, r.maxSecond = min(r.minSecond, c), max(r.maxSecond, c)
	}
	if whole == 0 {
		r.minSecond = 0
	}
	return r
}

// rate: --rate R held for 20 s, as the server sees it.
func (b *bench) rate() error {
	const perSecond, secs = 100, 20
	srv, err := startServer(b.self, "-record")
	if err != nil {
		return err
	}
	defer srv.stop()
	users := perSecond * secs
	roster := filepath.Join(b.work.dir, "rate.csv")
	if err := writeRoster(roster, "rate", users); err != nil {
		return err
	}
	if _, err := b.runProvision(srv.url, roster, users, 16, strconv.Itoa(perSecond)); err != nil {
		return err
	}
	st, err := srv.stats()
	if err != nil {
		return err
	}
	m := measureAccepted(st.Accepted)
	dev := m.mean/perSecond - 1
	o := b.out
	fmt.Fprintf(o, "\n### `--rate %d` over %d s\n\n", perSecond, secs)
	fmt.Fprintf(o, "%d users at concurrency 16 against the no-work server, which timestamps each registration it accepts.\n\n", users)
	fmt.Fprintf(o, "| registrations | first to last | mean rate | fewest / most in one second | target |\n|---:|---:|---:|---:|---|\n")
	fmt.Fprintf(o, "| %d | %.2f s | %.2f/s (%+.2f%%) | %d / %d | within 2%% %s |\n",
		m.n, float64(m.n-1)/m.mean, m.mean, 100*dev, m.minSecond, m.maxSecond, verdict(math.Abs(dev) <= 0.02))
	return nil
}

// storm: a server that refuses registrations above its rate with 429.
func (b *bench) storm() error {
	const allowed, burst, secs = 300, 10, 20
	srv, err := startServer(b.self, "-limit", strconv.Itoa(allowed), "-burst", strconv.Itoa(burst), "-record")
	if err != nil {
		return err
	}
	defer srv.stop()
	users := allowed * secs
	roster := filepath.Join(b.work.dir, "storm.csv")
	if err := writeRoster(roster, "storm", users); err != nil {
		return err
	}
	// No rate given: provision has to find the limit from the 429s. A failed user
	// makes provision exit 1, which runProvision reports as an error.
	p, err := b.runProvision(srv.url, roster, users, 32, "0")
	failed := "0"
	if err != nil {
		if p.exitCode != 1 {
			return err
		}
		failed = "some (exit 1)"
	}
	st, err := srv.stats()
	if err != nil {
		return err
	}
	m := measureAccepted(st.Accepted)
	share := float64(st.Limited) / float64(st.Limited+st.Registered)
	o := b.out
	fmt.Fprintf(o, "\n### A 429 storm\n\n")
	fmt.Fprintf(o, "The no-work server accepts %d registrations per second (token bucket, burst %d) and answers the rest `429 M_LIMIT_EXCEEDED` with `retry_after_ms`, as Synapse's rate limiter does. provision runs with `--rate 0 --concurrency 32`: it is not told the limit.\n\n", allowed, burst)
	fmt.Fprintf(o, "| users | failed | requests answered 429 | accepted rate | of the allowed %d/s | targets |\n|---:|---:|---:|---:|---:|---|\n", allowed)
	fmt.Fprintf(o, "| %d | %s | %d of %d (%.1f%%) | %.0f/s | %s | no failed user %s, < 10%% 429 %s |\n",
		users, failed, st.Limited, st.Limited+st.Registered, 100*share, m.mean, pct(m.mean, allowed),
		verdict(failed == "0"), verdict(share < 0.10))
	return nil
}

// autoCase is one server on which --rate auto is compared with fixed settings.
type autoCase struct {
	name   string
	server []string // provision-bench serve flags
	users  int
	fixed  [][2]string // concurrency, rate
}

// autoPairs is how many times the best fixed setting and --rate auto each run, in
// turn, after the sweep: a single run moves by 5 to 10% on a shared machine, and the
// best of a sweep is the luckiest of its runs, so one auto run against it would be
// judged against noise.
const autoPairs = 3

// auto: --rate auto against servers with limits, compared with the best fixed
// setting of a small sweep. The sweep only picks the setting; the comparison is of
// medians over autoPairs runs of each, alternated so that the machine's load moves
// both alike.
func (b *bench) auto() error {
	cases := []autoCase{
		{"capacity 8 at a time, 20 ms each (400/s)", []string{"-workers", "8", "-service", "20ms"}, 3000,
			[][2]string{{"8", "0"}, {"16", "0"}, {"64", "0"}}},
		{"429 above 300/s", []string{"-limit", "300", "-burst", "10"}, 3000,
			[][2]string{{"16", "300"}, {"32", "0"}}},
		{"no work", nil, 200000,
			[][2]string{{"64", "0"}, {"128", "0"}}},
	}
	o := b.out
	fmt.Fprintf(o, "\n### `--rate auto`\n\n")
	fmt.Fprintf(o, "Each server gets a small sweep of fixed settings to find the best one; then that setting and `--rate auto` (ceiling 256, the default) run %d times each, in turn, with the same roster, and their medians are compared. Each roster takes some 10 to 15 s at the best setting: auto starts from one request in flight and spends its first half second or so finding the pace, which a shorter run would weigh more (against the no-work server, 60,000 users in 5 s gave medians of 90 and 93%%).\n\n", autoPairs)
	fmt.Fprintf(o, "| server | users per run | best fixed setting | its runs, users/s | `--rate auto` runs, users/s | median of auto / median of fixed | target |\n|---|---:|---|---|---|---:|---|\n")
	for _, c := range cases {
		if err := b.autoCase(c); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) autoCase(c autoCase) error {
	srv, err := startServer(b.self, c.server...)
	if err != nil {
		return err
	}
	defer srv.stop()
	roster := filepath.Join(b.work.dir, "auto.csv")
	if err := writeRoster(roster, "auto", c.users); err != nil {
		return err
	}
	var best provisionResult
	var setting [2]string
	for _, f := range c.fixed {
		conc, _ := strconv.Atoi(f[0])
		p, err := b.runProvision(srv.url, roster, c.users, conc, f[1])
		if err != nil {
			return err
		}
		if best.users == 0 || p.perSecond() > best.perSecond() {
			best, setting = p, f
		}
	}
	conc, _ := strconv.Atoi(setting[0])
	var fixed, auto []float64
	for range autoPairs {
		p, err := b.runProvision(srv.url, roster, c.users, conc, setting[1])
		if err != nil {
			return err
		}
		fixed = append(fixed, p.perSecond())
		a, err := b.runProvision(srv.url, roster, c.users, 256, "auto")
		if err != nil {
			return err
		}
		auto = append(auto, a.perSecond())
	}
	mf, ma := median(fixed), median(auto)
	fmt.Fprintf(b.out, "| %s | %d | `--concurrency %s --rate %s` | %s | %s | %s | ≥ 90%% %s |\n", c.name, c.users, setting[0], setting[1],
		joinRates(fixed), joinRates(auto), pct(ma, mf), verdict(ma >= 0.9*mf))
	return nil
}

// median of xs (not empty); xs is sorted in place.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func joinRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, ", ")
}
