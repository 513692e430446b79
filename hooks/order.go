package hooks

import (
	"slices"
	"time"
)

// Delivery in seq order. The entries of one inbox are committed in seq
// order, often several in one transaction, and each is then fanned out by
// the goroutine that stored it: its publisher's, a receipt worker's, the
// bus's for another node's. Those race, so an entry could reach the broker
// before the one just below it, and a device saw seq 8 before 7 (the load
// tester counted 0.1–6% of entries under load). A device takes a jump in
// seq for something missing, and fetches history for nothing.
//
// So local keeps, per inbox it fans out, the seq it expects next. An entry
// above it waits, in order, until the ones below arrive (they were
// committed, since seqs are gapless, and are on their way), and goes out
// right after them, on the goroutine that brought the last missing one. An
// entry below it (a gap repair, a late one) goes out at once. What waits
// longer than reorderWait, or beyond maxHeld entries, goes out anyway: a
// predecessor that was stored on a node that died before announcing it is
// repaired from the store by gaps.go, later. Waiting is like a slow
// publisher, which the hand-over with catch-up already allows for
// (README.md): held entries have not marked catching-up gates yet, and
// mark them when they go out.

const (
	reorderWait = 50 * time.Millisecond
	maxHeld     = 256             // entries held per inbox
	orderIdle   = 2 * time.Minute // an inbox's order is forgotten after this long without an entry
)

type inboxOrder struct {
	next int64 // the seq expected next
	last time.Time
	held []heldEntry // above next, by seq
}

type heldEntry struct {
	seq     int64
	payload []byte
	qos     byte
	since   time.Time
}

// inOrder fans out the entry now, or holds it until the entries below it
// have gone out. The shard's lock is held.
func (f *fanout) inOrder(sh *deliveryShard, inbox string, seq int64, payload []byte, qos byte) {
	if seq <= 0 { // typing: never stored, no order
		f.publishLocked(sh, inbox, seq, payload, qos)
		return
	}
	now := f.now()
	o := sh.orders[inbox]
	if o == nil {
		if sh.orders == nil {
			sh.orders = map[string]*inboxOrder{}
		}
		o = &inboxOrder{next: seq}
		sh.orders[inbox] = o
	}
	o.last = now
	if seq > o.next {
		i, found := slices.BinarySearchFunc(o.held, seq, func(h heldEntry, s int64) int { return int(h.seq - s) })
		if found {
			return // the same entry twice (a retry's delivery): one is enough
		}
		if len(o.held) == 0 {
			sh.holding++
			f.holding.Add(1)
		}
		o.held = slices.Insert(o.held, i, heldEntry{seq: seq, payload: payload, qos: qos, since: now})
		f.metrics.Reordered.Inc()
		if len(o.held) > maxHeld {
			f.release(sh, inbox, o)
		}
		return
	}
	f.publishLocked(sh, inbox, seq, payload, qos)
	if seq == o.next {
		o.next++
		f.drain(sh, inbox, o)
	}
}

// drain fans out the held entries that are next in order.
func (f *fanout) drain(sh *deliveryShard, inbox string, o *inboxOrder) {
	if len(o.held) == 0 {
		return
	}
	for len(o.held) > 0 && o.held[0].seq <= o.next {
		h := o.held[0]
		o.held = o.held[1:]
		f.publishLocked(sh, inbox, h.seq, h.payload, h.qos)
		if h.seq == o.next {
			o.next++
		}
	}
	if len(o.held) == 0 {
		o.held = nil
		sh.holding--
		f.holding.Add(-1)
	}
}

// release gives up waiting for the entries below the held ones of inbox:
// it fans out what it holds, in order.
func (f *fanout) release(sh *deliveryShard, inbox string, o *inboxOrder) {
	f.metrics.ReorderTimeouts.Inc()
	o.next = o.held[0].seq
	f.drain(sh, inbox, o)
}

// runOrder releases what waited too long, and forgets idle inboxes, until
// Close.
func (f *fanout) runOrder() {
	t := time.NewTicker(reorderWait / 2)
	defer t.Stop()
	lastPrune := f.now()
	for {
		select {
		case <-t.C:
		case <-f.w.quit:
			return
		}
		now := f.now()
		prune := now.Sub(lastPrune) > orderIdle/4
		if !prune && f.holding.Load() == 0 {
			continue // nothing waits: an idle node takes no shard's lock
		}
		if prune {
			lastPrune = now
		}
		for i := range f.delivering {
			sh := &f.delivering[i]
			sh.mu.Lock()
			if sh.holding > 0 || prune {
				for inbox, o := range sh.orders {
					switch {
					case len(o.held) > 0 && now.Sub(o.held[0].since) >= reorderWait:
						f.release(sh, inbox, o)
					case len(o.held) == 0 && prune && now.Sub(o.last) > orderIdle:
						delete(sh.orders, inbox)
					}
				}
			}
			sh.mu.Unlock()
		}
	}
}
