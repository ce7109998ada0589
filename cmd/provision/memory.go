package main

import (
	"os"
	"runtime/debug"
)

// memoryTarget is the heap size past which the garbage collector works harder to keep
// a run small (a soft limit, debug.SetMemoryLimit). A million-user run holds about
// 40 MB at its peak: the roster's duplicate check during the first pass (some 38
// bytes per user), then the journal's index (some 18). Near this target the
// collector runs as often as it must to stay under it. Both structures hold no
// pointers, so those extra collections cost little. Past the target (rosters of well
// over a million users) the limit gives way rather than starve the run: Go's
// collector never takes more than half the CPU, and memory grows as the roster needs.
const memoryTarget = 44 << 20

// gcPercent is how far the heap may grow past what is live before a collection,
// below memoryTarget (Go's default is 100). A run's live heap is small, a few MB
// until the roster is large, and what it allocates per user is garbage within
// milliseconds, so at the default the collector runs every few hundred users. At
// 400 it runs a quarter as often: measured against the no-work server, 4 to 8% more
// users per second, for a peak RSS of some 46 MB instead of 28 (the limit above
// still caps it).
const gcPercent = 400

// limitMemory applies memoryTarget and gcPercent, unless the operator chose them with
// GOMEMLIMIT and GOGC.
func limitMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryTarget)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}
