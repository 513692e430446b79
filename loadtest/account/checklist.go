package account

import "sync"

// Arrival classifies one received message.
type Arrival uint8

const (
	// ArrivalNew is the first copy, in order.
	ArrivalNew Arrival = iota
	// ArrivalReordered is the first copy, but a later message from the same
	// sender arrived before it.
	ArrivalReordered
	// ArrivalDuplicate is a copy of a message this receiver already has.
	ArrivalDuplicate
)

// Checklist records, for each receiver, which messages of each sender arrived.
// Rows are independent: receivers mark concurrently without contention.
type Checklist struct {
	rows []row
}

type row struct {
	mu      sync.Mutex // guards the fields below
	streams map[int32]*stream
}

type stream struct {
	seen      bitset
	maxSeq    int64 // highest seq seen; -1 before the first
	dups      int64
	reordered int64
}

// NewChecklist returns a checklist for receivers 0 … receivers-1.
func NewChecklist(receivers int) *Checklist {
	c := &Checklist{rows: make([]row, receivers)}
	for i := range c.rows {
		c.rows[i].streams = make(map[int32]*stream)
	}
	return c
}

// Mark records that receiver got message seq of sender.
func (c *Checklist) Mark(receiver int, sender int32, seq int64) Arrival {
	r := &c.rows[receiver]
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.streams[sender]
	if s == nil {
		s = &stream{maxSeq: -1}
		r.streams[sender] = s
	}
	if s.seen.set(seq) {
		s.dups++
		return ArrivalDuplicate
	}
	if seq < s.maxSeq {
		s.reordered++
		return ArrivalReordered
	}
	s.maxSeq = seq
	return ArrivalNew
}

// Has reports whether receiver got message seq of sender.
func (c *Checklist) Has(receiver int, sender int32, seq int64) bool {
	r := &c.rows[receiver]
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.streams[sender]
	return s != nil && s.seen.has(seq)
}

// Receivers returns the number of rows.
func (c *Checklist) Receivers() int { return len(c.rows) }

// Loss names one message that did not reach one receiver.
type Loss struct {
	Sender   int32 `json:"sender"`
	Seq      int64 `json:"seq"`
	Receiver int   `json:"receiver"`
}

// Result is the outcome of Reconcile.
type Result struct {
	Accepted         int64  `json:"accepted"`           // messages that had to arrive (StatusAccepted)
	Expected         int64  `json:"expected"`           // deliveries that had to happen: accepted × their receivers
	Delivered        int64  `json:"delivered"`          // expected deliveries that happened
	Lost             int64  `json:"lost"`               // expected deliveries that did not happen
	Duplicates       int64  `json:"duplicates"`         // extra copies received
	Reordered        int64  `json:"reordered"`          // first copies that arrived after a later message of the same sender
	InDoubt          int64  `json:"in_doubt"`           // messages written but never acknowledged (StatusWritten, StatusFailed)
	InDoubtDelivered int64  `json:"in_doubt_delivered"` // deliveries of in-doubt messages
	Unexpected       int64  `json:"unexpected"`         // deliveries of messages never sent, refused, or to a receiver that should not get them
	LostSamples      []Loss `json:"lost_samples,omitempty"`
}

// maxLostSamples bounds Result.LostSamples.
const maxLostSamples = 20

// Reconcile compares the send logs (indexed by sender) with the checklist.
// receivers calls fn for every receiver that must get a message of sender sent
// to dest.
func Reconcile(logs []*SendLog, c *Checklist, receivers func(sender int32, dest int32, fn func(receiver int))) Result {
	var res Result
	type key struct {
		receiver int
		sender   int32
	}
	// Copy the checklist so late arrivals cannot race with the walk.
	seen := make(map[key]bitset)
	for i := range c.rows {
		r := &c.rows[i]
		r.mu.Lock()
		for sender, s := range r.streams {
			seen[key{i, sender}] = append(bitset(nil), s.seen...)
			res.Duplicates += s.dups
			res.Reordered += s.reordered
		}
		r.mu.Unlock()
	}
	expected := make(map[key]bitset)
	for si, l := range logs {
		sender := int32(si)
		status, dest := l.snapshot()
		for seq, st := range status {
			seq := int64(seq)
			switch st {
			case StatusAccepted:
				res.Accepted++
				receivers(sender, dest[seq], func(r int) {
					k := key{r, sender}
					b := expected[k]
					b.set(seq)
					expected[k] = b
					res.Expected++
					if seen[k].has(seq) {
						res.Delivered++
						return
					}
					res.Lost++
					if len(res.LostSamples) < maxLostSamples {
						res.LostSamples = append(res.LostSamples, Loss{Sender: sender, Seq: seq, Receiver: r})
					}
				})
			case StatusWritten, StatusFailed:
				res.InDoubt++
				receivers(sender, dest[seq], func(r int) {
					k := key{r, sender}
					if !seen[k].has(seq) {
						return
					}
					b := expected[k]
					b.set(seq)
					expected[k] = b
					res.InDoubtDelivered++
				})
			}
		}
	}
	for k, b := range seen {
		exp := expected[k]
		b.each(func(seq int64) {
			if !exp.has(seq) {
				res.Unexpected++
			}
		})
	}
	return res
}
