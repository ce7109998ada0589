package roster

// The duplicate check: the one rule that keeps something per user.

import (
	"hash/maphash"
	"math"
)

type seenSet struct {
	seed, checkSeed maphash.Seed
	first           map[uint64]seen
	// collided holds, by name, the rare localparts whose 64-bit hash equals
	// that of a different earlier one, so they are still told apart.
	collided map[string]int
}

type seen struct {
	line  uint32
	check uint32 // a second, independent hash of the name
}

// newSeenSet returns an empty set, or nil (which finds no duplicate) when the
// roster was checked already.
func newSeenSet(checked bool) *seenSet {
	if checked {
		return nil
	}
	return &seenSet{seed: maphash.MakeSeed(), checkSeed: maphash.MakeSeed(), first: make(map[uint64]seen)}
}

// add records a localpart seen on a line; when it was seen before, it
// returns the line where.
func (s *seenSet) add(name string, line int) (firstLine int, dup bool) {
	if s == nil {
		return 0, false // Options.Checked: the first pass found no duplicate
	}
	h := maphash.String(s.seed, name)
	c := uint32(maphash.String(s.checkSeed, name))
	e, ok := s.first[h]
	if !ok {
		s.first[h] = seen{line: uint32(min(line, math.MaxUint32)), check: c}
		return 0, false
	}
	if e.check == c {
		return int(e.line), true
	}
	if l, ok := s.collided[name]; ok {
		return l, true
	}
	if s.collided == nil {
		s.collided = make(map[string]int)
	}
	s.collided[name] = line
	return 0, false
}
