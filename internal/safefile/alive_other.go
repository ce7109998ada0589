//go:build !unix

package safefile

// processAlive cannot tell on this system: keep every temporary file.
func processAlive(int) bool { return true }
