//go:build profile

package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// A build with -tags profile writes a CPU profile of the whole command to the file
// named by PROVISION_CPUPROFILE, for `go tool pprof`. Release builds have no such hook.
//
//	go build -tags profile -o bin/provision-profile ./cmd/provision
//	PROVISION_CPUPROFILE=cpu.prof bin/provision-profile run ...
//	go tool pprof -top bin/provision-profile cpu.prof
func init() {
	path := os.Getenv("PROVISION_CPUPROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "provision: PROVISION_CPUPROFILE:", err)
		os.Exit(ExitUsage)
	}
	stopProfile = func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
