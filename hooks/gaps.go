package hooks

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// Gap repair. In a cluster an entry can be stored and never reach this
// node: the node that stored it died between its commit and its
// announcement (its sender may even have had the PUBACK), or NATS dropped
// the announcement. The node notices when a later entry of the same inbox
// arrives: for each inbox its clients subscribe to, it keeps the highest
// seq fanned out and the seqs below it that have not come. Live entries of
// one inbox may arrive slightly out of order (several writers), so a
// missing seq is only repaired after gapWait: read from the store and
// fanned out here like any entry (a device catching up is told first, as
// always, and one that has it is not sent it twice).

const (
	gapWait    = 500 * time.Millisecond
	maxMissing = 1024 // missing seqs remembered per inbox; more are repaired as a range
)

// gapTracker is sharded like the delivery locks (deliveryShard): seen runs
// in every fan-out, on the publisher's goroutine, and must not make all
// inboxes wait on one lock.
type gapTracker struct {
	shards [64]gapShard
}

type gapShard struct {
	mu    sync.Mutex
	inbox map[string]*inboxGaps
}

type inboxGaps struct {
	high    int64               // highest seq fanned out here
	missing map[int64]time.Time // seqs below high not fanned out yet -> since when
}

func newGapTracker() *gapTracker {
	g := &gapTracker{}
	for i := range g.shards {
		g.shards[i].inbox = map[string]*inboxGaps{}
	}
	return g
}

func (g *gapTracker) shard(inbox string) *gapShard {
	return &g.shards[maphash.String(lockSeed, inbox)%uint64(len(g.shards))]
}

// watch starts tracking an inbox (a local client subscribed to it); forget
// stops (the last one left).
func (g *gapTracker) watch(inbox string) {
	sh := g.shard(inbox)
	sh.mu.Lock()
	if sh.inbox[inbox] == nil {
		sh.inbox[inbox] = &inboxGaps{}
	}
	sh.mu.Unlock()
}

func (g *gapTracker) forget(inbox string) {
	sh := g.shard(inbox)
	sh.mu.Lock()
	delete(sh.inbox, inbox)
	sh.mu.Unlock()
}

// tracked returns how many inboxes are tracked.
func (g *gapTracker) tracked() int {
	n := 0
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		n += len(sh.inbox)
		sh.mu.Unlock()
	}
	return n
}

// missing returns how many seqs of inbox are missing.
func (g *gapTracker) missing(inbox string) int {
	sh := g.shard(inbox)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ig := sh.inbox[inbox]; ig != nil {
		return len(ig.missing)
	}
	return 0
}

// seen records that seq of inbox was fanned out here.
func (g *gapTracker) seen(inbox string, seq int64, now time.Time) {
	if seq <= 0 {
		return
	}
	sh := g.shard(inbox)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ig := sh.inbox[inbox]
	if ig == nil {
		return
	}
	switch {
	case ig.high == 0:
		ig.high = seq // what came before is the subscription's catch-up's
	case seq > ig.high:
		for s := ig.high + 1; s < seq && len(ig.missing) < maxMissing; s++ {
			if ig.missing == nil {
				ig.missing = map[int64]time.Time{}
			}
			ig.missing[s] = now
		}
		ig.high = seq
	default:
		delete(ig.missing, seq)
	}
}

// due returns, per inbox, the missing seqs older than gapWait.
func (g *gapTracker) due(now time.Time) map[string][]int64 {
	var out map[string][]int64
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		for inbox, ig := range sh.inbox {
			for s, since := range ig.missing {
				if now.Sub(since) >= gapWait {
					if out == nil {
						out = map[string][]int64{}
					}
					out[inbox] = append(out[inbox], s)
				}
			}
		}
		sh.mu.Unlock()
	}
	return out
}

func (g *gapTracker) filled(inbox string, seq int64) {
	sh := g.shard(inbox)
	sh.mu.Lock()
	if ig := sh.inbox[inbox]; ig != nil {
		delete(ig.missing, seq)
	}
	sh.mu.Unlock()
}

// runGaps repairs the gaps that outlived gapWait, until Close.
func (f *fanout) runGaps() {
	t := time.NewTicker(gapWait / 2)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			for inbox, seqs := range f.gaps.due(f.now()) {
				f.repairGaps(inbox, seqs)
			}
		case <-f.w.quit:
			return
		}
	}
}

// repairGaps reads the missing entries of inbox from the store and fans
// them out here.
func (f *fanout) repairGaps(inbox string, seqs []int64) {
	lo, hi := seqs[0], seqs[0]
	for _, s := range seqs {
		lo, hi = min(lo, s), max(hi, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.StoreTimeout)
	es, err := f.store.Read(ctx, inbox, lo-1, int(hi-lo+1))
	cancel()
	if err != nil {
		f.log.Warn("gap repair: read", "inbox", inbox, "error", err)
		return // tried again at the next tick
	}
	want := make(map[int64]bool, len(seqs))
	for _, s := range seqs {
		want[s] = true
	}
	for _, e := range es {
		if !want[e.Seq] {
			continue
		}
		f.gaps.filled(inbox, e.Seq)
		f.metrics.GapRepairs.Inc()
		f.log.Debug("gap repair", "inbox", inbox, "seq", e.Seq)
		f.local(inbox, e.Seq, e.AppendJSON(nil), 1)
	}
	// Seqs the store does not have (a transaction that never committed
	// cannot leave one: seqs are gapless) are given up.
	for _, s := range seqs {
		f.gaps.filled(inbox, s)
	}
}
