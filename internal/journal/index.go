package journal

import (
	"hash/maphash"
	"sort"
)

// index is all the journal keeps in memory of its users: for each localpart, where
// in the file its latest record is and what kind of record that is. Everything else,
// the password above all, is read back from the file when Lookup asks for it, so a
// run of any length holds 16 bytes per user (plus a few for growth room) rather than
// the decrypted records themselves.
//
// A localpart is known by a 64-bit keyed hash (the key) and a second, independent
// 22-bit one (the check). The key finds the slot; the check tells two localparts
// that share a key apart, and the later one then goes to names, a map by name, so
// both are kept exactly. Only two localparts that share both hashes, 86 bits in all,
// could be confused: a chance of about n²/2⁸⁷ for n users, below 10⁻¹⁴ for a
// million. Even then Lookup, which reads the record back and compares the
// localpart, never hands out another user's entry. The seeds are random per Open, so
// no roster can be crafted to collide.
//
// Slots live in 4096 sorted leaves picked by the key's top bits. Growing a leaf
// copies a few kilobytes at most; one big table would need its old and new copies
// in memory at once as it grows, which is exactly the peak a long run cannot afford.
type index struct {
	seed, checkSeed maphash.Seed
	leaves          [][]slot
	names           map[string]uint64
	n               int
}

type slot struct{ key, val uint64 }

// A slot's val: the offset of the user's latest record, what that record is, and
// the check hash.
const (
	leafBits  = 12
	offBits   = 40 // a journal of up to 1 TiB: some five billion users
	codeBits  = 2
	checkBits = 64 - offBits - codeBits
	maxOffset = 1<<offBits - 1
)

// What a user's latest record is.
const (
	codeIntent  = 0 // an intent: no outcome yet
	codeCreated = 1 // an outcome with status "created"
	codeOutcome = 2 // an outcome with another status
)

func pack(off int64, code uint8, check uint64) uint64 {
	return uint64(off) | uint64(code)<<offBits | check<<(offBits+codeBits)
}

func valOffset(v uint64) int64 { return int64(v & maxOffset) }
func valCode(v uint64) uint8   { return uint8(v>>offBits) & (1<<codeBits - 1) }
func valCheck(v uint64) uint64 { return v >> (offBits + codeBits) }

func newIndex() *index {
	return &index{seed: maphash.MakeSeed(), checkSeed: maphash.MakeSeed(), leaves: make([][]slot, 1<<leafBits)}
}

func (x *index) hash(name string) (key, check uint64) {
	return maphash.String(x.seed, name), maphash.String(x.checkSeed, name) >> (64 - checkBits)
}

func (x *index) hashBytes(name []byte) (key, check uint64) {
	return maphash.Bytes(x.seed, name), maphash.Bytes(x.checkSeed, name) >> (64 - checkBits)
}

// find returns key's leaf and its position there, and whether the slot exists.
func (x *index) find(key uint64) (leaf, i int, found bool) {
	leaf = int(key >> (64 - leafBits))
	s := x.leaves[leaf]
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m].key < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return leaf, lo, lo < len(s) && s[lo].key == key
}

// get returns the val of the localpart name, hashed to key and check.
func (x *index) get(key, check uint64, name string) (uint64, bool) {
	if len(x.names) > 0 {
		if v, ok := x.names[name]; ok {
			return v, true
		}
	}
	leaf, i, found := x.find(key)
	if !found {
		return 0, false
	}
	v := x.leaves[leaf][i].val
	if valCheck(v) != check {
		return 0, false // another localpart with the same key; name would be in names
	}
	return v, true
}

// put records that the latest record of the localpart hashed to key and check is at
// off. name is called only on the rare paths that need the name itself.
func (x *index) put(key, check uint64, name func() string, off int64, code uint8) {
	v := pack(off, code, check)
	if len(x.names) > 0 {
		n := name()
		if _, ok := x.names[n]; ok {
			x.names[n] = v
			return
		}
	}
	leaf, i, found := x.find(key)
	s := x.leaves[leaf]
	if found {
		if valCheck(s[i].val) == check {
			s[i].val = v
			return
		}
		if x.names == nil {
			x.names = make(map[string]uint64)
		}
		x.names[name()] = v
		x.n++
		return
	}
	if len(s) == cap(s) {
		// Grow by an eighth: the slack stays small, and a leaf is a few kilobytes, so
		// copying it often costs little.
		t := make([]slot, len(s), len(s)+len(s)/8+4)
		copy(t, s)
		s = t
	}
	s = s[:len(s)+1]
	copy(s[i+1:], s[i:])
	s[i] = slot{key: key, val: v}
	x.leaves[leaf] = s
	x.n++
}

func (x *index) len() int { return x.n }

// span is [from, to): the records of a session that a checkpoint closed.
type span struct{ from, to int64 }

// covered reports whether off lies in one of spans, which are in file order.
func covered(spans []span, off int64) bool {
	i := sort.Search(len(spans), func(i int) bool { return spans[i].from > off })
	return i > 0 && off < spans[i-1].to
}
