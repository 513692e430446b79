// Package account checks off every message a load test sends against what the
// receivers got, and counts what went missing, arrived twice or out of order.
//
// Senders write their messages' fate into a SendLog (one per sender, indexed by
// the sender's own sequence number). Receivers mark each arrival in a Checklist
// (one row per receiver, one stream per sender inside it). Reconcile then walks
// every message that must have arrived and asks, for each receiver that should
// have got it, whether it did. For Parley's inboxes, whose entries carry a
// gapless server sequence, SeqTracker adds a second, independent check.
package account

import "math/bits"

// bitset is a growable set of non-negative integers.
type bitset []uint64

func (b *bitset) set(i int64) (was bool) {
	w := int(i >> 6)
	if w >= len(*b) {
		n := max(w+1, 2*len(*b))
		grown := make(bitset, n)
		copy(grown, *b)
		*b = grown
	}
	m := uint64(1) << (uint(i) & 63)
	was = (*b)[w]&m != 0
	(*b)[w] |= m
	return was
}

func (b bitset) has(i int64) bool {
	w := int(i >> 6)
	return i >= 0 && w < len(b) && b[w]&(uint64(1)<<(uint(i)&63)) != 0
}

func (b bitset) count() int64 {
	var n int
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// each calls fn for every member in increasing order.
func (b bitset) each(fn func(i int64)) {
	for w, word := range b {
		for word != 0 {
			t := bits.TrailingZeros64(word)
			fn(int64(w)<<6 | int64(t))
			word &^= 1 << uint(t)
		}
	}
}
