package main

import (
	"os"
	"runtime/debug"
)

// memoryTarget is the heap size past which the garbage collector works harder to keep
// a run small (a soft limit, debug.SetMemoryLimit). A million-user run holds about
// 40 MB at its peak: the roster's duplicate check during the first pass (some 38
// bytes per user), then the journal's index (some 18). Left to itself the collector
// lets the heap grow to twice what is live before it runs; near this target it runs
// sooner instead. Both structures hold no pointers, so those extra collections cost
// little. Past the target (rosters of well over a million users) the limit gives way
// rather than starve the run: Go's collector never takes more than half the CPU, and
// memory grows as the roster needs.
const memoryTarget = 44 << 20

// limitMemory applies memoryTarget unless the operator chose a limit with GOMEMLIMIT.
func limitMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryTarget)
	}
}
