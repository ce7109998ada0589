package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/provision-matrix/provision/internal/dendritetest"
)

// dendrite: a real Dendrite (SQLite) at bcrypt cost 10, its default, and 4. The raw
// loop finds the server's best concurrency; provision then runs there with
// everything on, for about 20 s of the raw loop's rate.
func (b *bench) dendrite() error {
	o := b.out
	fmt.Fprintf(o, "\n### Dendrite %s\n\n", dendritetest.Version)
	fmt.Fprintf(o, "A real Dendrite on this machine (SQLite, `scripts/dendrite`), sharing its cores with the client. The raw loop runs %s per concurrency; provision gets about 20 s worth of users at the raw loop's best concurrency, then `--rate auto`. provision also logs out the session Dendrite opens on every new account (it ignores `inhibit_login`): one more request per user that the raw loop does not make.\n\n", "10 s (cost 10) or 5 s (cost 4)")
	fmt.Fprintf(o, "| bcrypt cost | client | concurrency | users | users/s | of the raw loop | target |\n|---:|---|---:|---:|---:|---:|---|\n")
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
	dur := 5 * time.Second
	if cost >= 10 {
		dur = 10 * time.Second
	}
	prefix := "d" + strconv.Itoa(cost) + "-"
	saved := b.work.secret
	b.work.secret = srv.SharedSecret
	raws, best, err := b.sweepRaw(nil, srv.URL, []int{1, 2, 4, 8}, dur, prefix+"raw-")
	b.work.secret = saved
	if err != nil {
		return err
	}
	o := b.out
	for _, r := range raws {
		fmt.Fprintf(o, "| %d | raw loop | %d | %d | %.1f | | |\n", cost, r.conc, r.users, r.perSecond())
	}
	users := max(40, int(best.perSecond()*20))
	run := func(name string, conc int, rate string) (provisionResult, error) {
		roster := filepath.Join(b.work.dir, name+".csv")
		if err := writeRoster(roster, prefix+name+"-", users); err != nil {
			return provisionResult{}, err
		}
		return b.runProvisionOn(srv.URL, srv.SharedSecretFile, roster, users, conc, rate)
	}
	p, err := run("fixed", best.conc, "0")
	if err != nil {
		return err
	}
	ratio := p.perSecond() / best.perSecond()
	fmt.Fprintf(o, "| %d | **provision** | %d | %d | %.1f | **%s** | ≥ 95%% %s |\n", cost, p.conc, users, p.perSecond(), pct(p.perSecond(), best.perSecond()), verdict(ratio >= 0.95))
	a, err := run("auto", 64, "auto")
	if err != nil {
		return err
	}
	fmt.Fprintf(o, "| %d | provision `--rate auto` | ≤ 64 | %d | %.1f | %s | ≥ 90%% of provision's fixed %s |\n", cost, users, a.perSecond(), pct(a.perSecond(), best.perSecond()), verdict(a.perSecond() >= 0.9*p.perSecond()))
	return nil
}
