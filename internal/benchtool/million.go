package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// million: a 1,000,000-row roster, checked offline and then provisioned against the
// no-work server, in bounded memory.
func (b *bench) million() error {
	roster := filepath.Join(b.work.dir, "million.csv")
	if err := writeRoster(roster, "m", b.rows); err != nil {
		return err
	}
	defer os.Remove(roster)
	fi, err := os.Stat(roster)
	if err != nil {
		return err
	}
	check, err := runChild(b.ctx, b.provision, "check", roster)
	if err != nil {
		return err
	}
	b.log("  provision check: %s, peak RSS %.1f MiB", check.wall.Round(time.Millisecond), mib(check.maxRSS))

	srv, err := startServer(b.self)
	if err != nil {
		return err
	}
	defer srv.stop()
	const conc = 64
	run, err := b.runProvision(srv.url, roster, b.rows, conc, "0")
	if err != nil {
		return err
	}
	journal, _ := os.Stat(filepath.Join(b.work.dir, fmt.Sprintf("run%d", b.work.runs), "journal"))
	o := b.out
	fmt.Fprintf(o, "\n### A roster of %d users\n\n", b.rows)
	fmt.Fprintf(o, "The roster is %.0f MiB of CSV (`localpart,displayname,email`).\n\n", mib(fi.Size()))
	fmt.Fprintf(o, "| step | wall time | CPU | peak RSS | target |\n|---|---:|---:|---:|---|\n")
	fmt.Fprintf(o, "| `provision check` | %.2f s | %.2f s | %.1f MiB | < 3 s %s |\n",
		check.wall.Seconds(), check.cpu.Seconds(), mib(check.maxRSS), verdict(b.rows < 1000000 || check.wall < 3*time.Second))
	fmt.Fprintf(o, "| `provision run` against the no-work server, concurrency %d | %.0f s (%.0f users/s) | %.0f s | %.1f MiB | < 64 MiB %s |\n",
		conc, run.wall.Seconds(), run.perSecond(), run.cpu.Seconds(), mib(run.maxRSS), verdict(run.maxRSS < 64<<20))
	if journal != nil {
		fmt.Fprintf(o, "\nThe journal ends at %.0f MiB (%.0f bytes per user).\n", mib(journal.Size()), float64(journal.Size())/float64(b.rows))
	}
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
