package main

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"time"
)

func numCPU() int { return runtime.NumCPU() }

// provisionResult is one provision run.
type provisionResult struct {
	conc  int
	users int
	child
}

func (p provisionResult) perSecond() float64 { return float64(p.users) / p.wall.Seconds() }
func (p provisionResult) cpuPerUser() time.Duration {
	return p.cpu / time.Duration(max(1, p.users))
}

// sweepRaw runs the raw loop at each concurrency and returns every result and the best.
func (b *bench) sweepRaw(srv *serverProc, url string, concs []int, dur time.Duration, prefix string, logout bool) ([]rawResult, rawResult, error) {
	var all []rawResult
	var best rawResult
	for _, c := range concs {
		var s0 time.Duration
		if srv != nil {
			s0 = srv.cpu()
		}
		r, err := rawLoop(b.ctx, url, b.work.secret, c, dur, prefix+"c"+strconv.Itoa(c)+"-", logout)
		if err != nil {
			return all, best, err
		}
		if srv != nil {
			r.serverCPU = srv.cpu() - s0
		}
		b.log("  raw loop, concurrency %d: %.0f users/s, %d µs CPU/user, server %d µs/user", c, r.perSecond(), r.cpuPerUser().Microseconds(), (r.serverCPU / time.Duration(max(1, r.users))).Microseconds())
		all = append(all, r)
		if r.perSecond() > best.perSecond() || best.users == 0 {
			best = r
		}
	}
	return all, best, nil
}

// runProvision provisions roster (users rows) on the no-work server at url, at
// concurrency conc and rate.
func (b *bench) runProvision(url, roster string, users, conc int, rate string, extra ...string) (provisionResult, error) {
	return b.runProvisionOn(url, b.work.secretFile, roster, users, conc, rate, extra...)
}

// runProvisionOn provisions roster on the server at url whose secret is in secretFile.
func (b *bench) runProvisionOn(url, secretFile, roster string, users, conc int, rate string, extra ...string) (provisionResult, error) {
	c, err := runChild(b.ctx, b.provision, b.work.provisionArgs(url, secretFile, roster, conc, rate, extra...)...)
	p := provisionResult{conc: conc, users: users, child: c}
	if err != nil {
		return p, err
	}
	b.log("  provision, concurrency %d, --rate %s: %.0f users/s, %.0f µs CPU/user, peak RSS %.1f MiB",
		conc, rate, p.perSecond(), float64(p.cpuPerUser().Microseconds()), float64(p.maxRSS)/(1<<20))
	return p, nil
}

// noworkPairs is how many times the raw loop and provision each run, in turn, at
// their best concurrencies, for the verdict.
const noworkPairs = 3

// nowork: what provision costs when the server costs nothing.
func (b *bench) nowork() error {
	srv, err := startServer(b.self)
	if err != nil {
		return err
	}
	defer srv.stop()
	raws, bestRaw, err := b.sweepRaw(srv, srv.url, []int{1, 4, 16, 64}, 3*time.Second, "raw-", false)
	if err != nil {
		return err
	}
	roster := filepath.Join(b.work.dir, "nowork.csv")
	if err := writeRoster(roster, "nw", b.users); err != nil {
		return err
	}
	var runs []provisionResult
	var best provisionResult
	for _, c := range []int{16, 64, 128} {
		s0 := srv.cpu()
		p, err := b.runProvision(srv.url, roster, b.users, c, "0")
		if err != nil {
			return err
		}
		b.log("    server %d µs/user", ((srv.cpu() - s0) / time.Duration(p.users)).Microseconds())
		runs = append(runs, p)
		if best.users == 0 || p.perSecond() > best.perSecond() {
			best = p
		}
	}
	// The sweeps pick the concurrencies; the verdict compares medians of runs taken in
	// turn, so that neither side is judged by its luckiest run, and with provision
	// running about as long as the raw loop (start-up and the final rename included).
	pairRoster := filepath.Join(b.work.dir, "nowork-pairs.csv")
	pairUsers := 3 * b.users
	if err := writeRoster(pairRoster, "nwp", pairUsers); err != nil {
		return err
	}
	var rawRates, provRates []float64
	for i := range noworkPairs {
		r, err := rawLoop(b.ctx, srv.url, b.work.secret, bestRaw.conc, 3*time.Second, fmt.Sprintf("rawpair%d-", i), false)
		if err != nil {
			return err
		}
		b.log("  raw loop, concurrency %d: %.0f users/s", r.conc, r.perSecond())
		p, err := b.runProvision(srv.url, pairRoster, pairUsers, best.conc, "0")
		if err != nil {
			return err
		}
		rawRates = append(rawRates, r.perSecond())
		provRates = append(provRates, p.perSecond())
	}
	rawRuns, provRuns := joinRates(rawRates), joinRates(provRates)
	mr, mp := median(rawRates), median(provRates)
	o := b.out
	fmt.Fprintf(o, "\n### No-work server\n\n")
	fmt.Fprintf(o, "Both sides on this machine's %d cores. The raw loop runs %s per concurrency; provision registers %d users per run (`--rate 0`).\n\n", numCPU(), 3*time.Second, b.users)
	fmt.Fprintf(o, "| client | concurrency | users/s | CPU per user | peak RSS |\n|---|---:|---:|---:|---:|\n")
	for _, r := range raws {
		fmt.Fprintf(o, "| raw loop | %d | %.0f | %d µs | |\n", r.conc, r.perSecond(), r.cpuPerUser().Microseconds())
	}
	for _, p := range runs {
		fmt.Fprintf(o, "| provision | %d | %.0f | %d µs | %.1f MiB |\n", p.conc, p.perSecond(), p.cpuPerUser().Microseconds(), float64(p.maxRSS)/(1<<20))
	}
	fmt.Fprintf(o, "\nThen each at its best concurrency, %d times in turn: the raw loop at %d for 3 s (%s users/s), provision at %d with %d users, about as long (%s users/s).\n",
		noworkPairs, bestRaw.conc, rawRuns, best.conc, pairUsers, provRuns)
	fmt.Fprintf(o, "\nprovision's median reaches **%s** of the raw loop's: target ≥ 60%% %s\n", pct(mp, mr), verdict(mp >= 0.60*mr))
	fmt.Fprintf(o, "\nprovision's own work: %d µs of CPU per user beyond the raw loop's %d µs (both at their best concurrency); its allocations per user are in `BenchmarkRun` above (the HTTP exchange: `BenchmarkRegister`).\n",
		(best.cpuPerUser() - bestRaw.cpuPerUser()).Microseconds(), bestRaw.cpuPerUser().Microseconds())
	return nil
}
