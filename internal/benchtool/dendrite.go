package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/provision-matrix/provision/internal/dendritetest"
)

// dendrite: a real Dendrite (SQLite) at bcrypt cost 10, its default, and 4.
//
// Dendrite ignores inhibit_login and opens a session on every account it registers;
// provision logs it out (four more write transactions on the server per user). So two yardsticks:
// the raw loop of the targets (nonce and registration), and the same loop logging
// the session out, which asks of the server exactly what provision asks.
func (b *bench) dendrite() error {
	o := b.out
	fmt.Fprintf(o, "\n### Dendrite %s\n\n", dendritetest.Version)
	fmt.Fprintf(o, "A real Dendrite on this machine (SQLite, as `scripts/dendrite` configures it), sharing the cores with the client. Each raw loop runs 10 s (cost 10) or 5 s (cost 4) per concurrency. provision registers about 20 s (cost 10) or 10 s (cost 4) worth of users per run, with everything on, at a few concurrencies, then with `--rate auto`. Its rosters hold localparts only: the raw loop sends no display name, which Dendrite would store (about 8%% of the throughput at cost 4).\n\n")
	fmt.Fprintf(o, "Dendrite ignores `inhibit_login` and opens a session on every new account; provision logs it out, so that no live access token is left behind. On Dendrite a logout costs about as much as a registration at cost 4 (four write transactions and a stream message, section 6 above): the raw loop of the target does not do it, so it is shown both ways.\n\n")
	fmt.Fprintf(o, "| bcrypt cost | client | concurrency | users | users/s | Dendrite's CPU per user | of the raw loop | of the raw loop + logout | target |\n|---:|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, cost := range []int{10, 4} {
		if err := b.dendriteAt(cost); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) dendriteAt(cost int) error {
	srv, err := dendritetest.Start(b.ctx, dendritetest.Options{BcryptCost: cost})
	if err != nil {
		return err
	}
	defer srv.Stop()
	cpu := func() time.Duration { return procCPU(srv.PID()) }
	dur := 5 * time.Second
	if cost >= 10 {
		dur = 10 * time.Second
	}
	prefix := "d" + strconv.Itoa(cost) + "-"
	saved := b.work.secret
	b.work.secret = srv.SharedSecret
	defer func() { b.work.secret = saved }()
	o := b.out
	perUser := func(d time.Duration, n int64) string {
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000/float64(max(1, n)))
	}
	var best [2]rawResult
	for i, logout := range []bool{false, true} {
		name := "raw loop"
		if logout {
			name = "raw loop + logout"
		}
		for _, c := range []int{1, 2, 8} {
			s0 := cpu()
			r, err := rawLoop(b.ctx, srv.URL, srv.SharedSecret, c, dur, prefix+fmt.Sprintf("raw%d-c%d-", i, c), logout)
			if err != nil {
				return err
			}
			sc := cpu() - s0
			b.log("  %s, concurrency %d: %.1f users/s", name, c, r.perSecond())
			fmt.Fprintf(o, "| %d | %s | %d | %d | %.1f | %s | | | |\n", cost, name, r.conc, r.users, r.perSecond(), perUser(sc, r.users))
			if best[i].users == 0 || r.perSecond() > best[i].perSecond() {
				best[i] = r
			}
		}
	}
	secs := 20.0
	if cost < 10 {
		secs = 10
	}
	users := max(40, int(best[1].perSecond()*secs))
	runs := 0
	run := func(conc int, rate string) (provisionResult, time.Duration, error) {
		runs++
		roster := filepath.Join(b.work.dir, fmt.Sprintf("d%d-%d.csv", cost, runs))
		if err := writeRosterOf(roster, fmt.Sprintf("%sp%d-", prefix, runs), users, false); err != nil {
			return provisionResult{}, 0, err
		}
		s0 := cpu()
		p, err := b.runProvisionOn(srv.URL, srv.SharedSecretFile, roster, users, conc, rate)
		return p, cpu() - s0, err
	}
	var bestP provisionResult
	for _, c := range []int{2, 8} {
		p, sc, err := run(c, "0")
		if err != nil {
			return err
		}
		fmt.Fprintf(o, "| %d | provision | %d | %d | %.1f | %s | %s | %s | |\n", cost, c, users, p.perSecond(), perUser(sc, int64(users)),
			pct(p.perSecond(), best[0].perSecond()), pct(p.perSecond(), best[1].perSecond()))
		if bestP.users == 0 || p.perSecond() > bestP.perSecond() {
			bestP = p
		}
	}
	a, sc, err := run(64, "auto")
	if err != nil {
		return err
	}
	fmt.Fprintf(o, "| %d | provision `--rate auto` | ≤ 64 | %d | %.1f | %s | %s | %s | ≥ 90%% of the best fixed %s |\n", cost, users, a.perSecond(), perUser(sc, int64(users)),
		pct(a.perSecond(), best[0].perSecond()), pct(a.perSecond(), best[1].perSecond()), verdict(a.perSecond() >= 0.9*bestP.perSecond()))
	fmt.Fprintf(o, "| %d | **best provision** | %d | | **%.1f** | | **%s** %s | **%s** %s | ≥ 95%% |\n", cost, bestP.conc, bestP.perSecond(),
		pct(bestP.perSecond(), best[0].perSecond()), verdict(bestP.perSecond() >= 0.95*best[0].perSecond()),
		pct(bestP.perSecond(), best[1].perSecond()), verdict(bestP.perSecond() >= 0.95*best[1].perSecond()))
	return nil
}
