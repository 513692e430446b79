package hooks

// watermark tracks the highest seq below which every seq has been seen, from
// acknowledgements that may arrive out of order.
type watermark struct {
	w     int64              // every seq ≤ w is acknowledged
	above map[int64]struct{} // acknowledged seqs > w+1
}

// maxAbove bounds the out-of-order set. Past it the set is dropped: the
// watermark stays where it is, which can only cause redelivery, never loss.
const maxAbove = 4096

// ack records seq and reports whether the watermark moved.
func (m *watermark) ack(seq int64) bool {
	if seq <= m.w {
		return false
	}
	if seq != m.w+1 {
		if m.above == nil {
			m.above = map[int64]struct{}{}
		}
		if len(m.above) >= maxAbove {
			clear(m.above)
		}
		m.above[seq] = struct{}{}
		return false
	}
	m.w = seq
	for {
		if _, ok := m.above[m.w+1]; !ok {
			break
		}
		delete(m.above, m.w+1)
		m.w++
	}
	return true
}

// raise moves the watermark up to seq, as if every seq up to it had been
// acknowledged, and reports whether it moved.
func (m *watermark) raise(seq int64) bool {
	if seq <= m.w {
		return false
	}
	above := m.above
	m.w, m.above = seq, nil
	for s := range above {
		if s > seq {
			m.ack(s)
		}
	}
	return true
}
