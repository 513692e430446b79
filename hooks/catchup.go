package hooks

import (
	"context"
	"errors"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// openGate registers a catch-up for (session, inbox): from now on live
// deliveries of inbox to this connection are held back (AllowDelivery) and
// every entry stored in inbox marks the gate dirty.
func (f *fanout) openGate(sess *session, cl *mqtt.Client, inbox string, qos byte) *gate {
	if qos > 1 {
		qos = 1
	}
	g := &gate{sess: sess, cl: cl, inbox: inbox, qos: qos}
	f.regMu.Lock()
	sess.mu.Lock()
	if old := sess.gates[inbox]; old != nil {
		old.live.Store(true) // superseded: its goroutine stops at its next step
		f.unregister(old)
		if old.cl == cl {
			// Same connection: what the old catch-up sent is in flight to
			// it already; the new one starts after it.
			g.resumeAfter = old.sent.Load()
		}
		// A device new to the inbox starts where the inbox ended when it
		// first subscribed, even if it is back before that catch-up ran.
		g.end, g.hasEnd = old.end, old.hasEnd
	}
	sess.gates[inbox] = g
	sess.mu.Unlock()
	f.catching[inbox] = append(f.catching[inbox], g)
	f.regMu.Unlock()
	return g
}

// unregister removes g from the inbox registry. f.regMu must be held.
func (f *fanout) unregister(g *gate) {
	gs := f.catching[g.inbox]
	for i, x := range gs {
		if x == g {
			gs = append(gs[:i], gs[i+1:]...)
			break
		}
	}
	if len(gs) == 0 {
		delete(f.catching, g.inbox)
	} else {
		f.catching[g.inbox] = gs
	}
}

// closeGate ends a catch-up without going live (refused or removed
// subscription, or the client left).
func (f *fanout) closeGate(g *gate) {
	f.regMu.Lock()
	f.unregister(g)
	g.sess.mu.Lock()
	if g.sess.gates[g.inbox] == g {
		delete(g.sess.gates, g.inbox)
	}
	g.sess.mu.Unlock()
	f.regMu.Unlock()
}

func (f *fanout) startCatchup(g *gate) {
	f.metrics.Catchups.Inc()
	f.w.run(func() {
		if !f.catchup(g) {
			f.closeGate(g)
		}
	})
}

// catchup sends the device every stored entry of the inbox after its cursor,
// in order, then lets live deliveries through. It reports whether it went
// live.
func (f *fanout) catchup(g *gate) bool {
	// Entries announced by other nodes from here on reach this node; those
	// announced before are in the store when it is read below.
	f.barrier()
	f.at(g, stepStart)
	after, fromEnd, ok := f.startingPoint(g)
	if !ok {
		return false
	}
	// A group member reads from its join on: a device whose cursor is older
	// (its user was removed and added back, and the device kept its
	// cursor) starts just before it, not with what happened meanwhile.
	floor := f.floor(g)
	if after < floor {
		after = floor
		f.raiseCursor(g, floor)
	}
	g.start, g.fromEnd = after, fromEnd
	f.at(g, stepStarted)
	f.log.Debug("catch-up", "client", g.sess.id, "inbox", g.inbox, "after", after)
	// Everything up to the starting point is the device's already (its
	// cursor, or where a superseded catch-up got to): a late live delivery
	// of it would be a repeat.
	if after > g.sent.Load() {
		g.sent.Store(after)
	}
	for {
		if g.cl.Closed() || g.live.Load() || f.w.closed.Load() {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), f.cfg.StoreTimeout)
		es, err := f.store.Read(ctx, g.inbox, after, f.cfg.CatchupBatch)
		cancel()
		if err != nil {
			f.log.Warn("catch-up read", "client", g.sess.id, "inbox", g.inbox, "error", err)
			if !f.pause(g, time.Second) {
				return false
			}
			continue
		}
		skipped := int64(0)
		for _, e := range es {
			if e.Seq <= floor {
				skipped = e.Seq // from before the member joined (after a rewind below)
			} else if !f.sendDirect(g, e) {
				return false
			}
			after = e.Seq
		}
		if skipped > 0 {
			f.raiseCursor(g, skipped)
		}
		f.metrics.CatchupEntries.Add(float64(len(es)))
		f.at(g, stepRead)
		if len(es) == f.cfg.CatchupBatch {
			continue
		}
		// Caught up, unless something was stored meanwhile. No delivery to
		// this inbox is under way while the decision is made (deliver holds
		// the delivery lock from marking the gate to the end of the fan-out).
		dl := &f.shard(g.inbox).mu
		dl.Lock()
		f.regMu.Lock()
		if g.fromEnd && g.first > 0 && g.first-1 < g.start {
			// A device new to the inbox starts at its end, read from the
			// store; an entry committed before that read but fanned out
			// only after the gate opened (its publisher had not reached
			// deliver yet) is the device's, and was held back from it:
			// start again before it.
			g.start, after = g.first-1, g.first-1
			g.dirty = false
			f.regMu.Unlock()
			dl.Unlock()
			f.rewindCursor(g, after)
			continue
		}
		if g.dirty {
			g.dirty = false
			f.regMu.Unlock()
			dl.Unlock()
			continue
		}
		g.live.Store(true)
		f.unregister(g)
		f.regMu.Unlock()
		dl.Unlock()
		f.log.Debug("caught up", "client", g.sess.id, "inbox", g.inbox, "seq", after)
		f.at(g, stepLive)
		return true
	}
}

// at reports a step of g's catch-up to the test hook, if any.
func (f *fanout) at(g *gate, s catchupStep) {
	if f.step != nil {
		f.step(g, s)
	}
}

// floor returns the seq after which g's device may read g's inbox: for a
// group, the member's FromSeq - 1 (0 while it reads from the start); 0 for
// a user's own inbox and for administrators.
func (f *fanout) floor(g *gate) int64 {
	if g.sess.admin || !strings.HasPrefix(g.inbox, protocol.GroupPrefix) {
		return 0
	}
	from, ok := f.members.member(g.inbox[len(protocol.GroupPrefix):], g.sess.user)
	if !ok || from <= 1 {
		return 0
	}
	return from - 1
}

// raiseCursor moves g's device's cursor up to seq: the entries up to it are
// not its to acknowledge, so its acknowledgements of the later ones move the
// cursor on from there.
func (f *fanout) raiseCursor(g *gate, seq int64) {
	sess := g.sess
	sess.mu.Lock()
	wm := sess.cursors[g.inbox]
	moved := wm != nil && wm.raise(seq)
	var w int64
	if moved {
		w = wm.w
	}
	sess.mu.Unlock()
	if moved {
		f.acks.setCursor(sess.id, g.inbox, w)
	}
}

// rewindCursor lowers a new device's starting cursor to seq.
func (f *fanout) rewindCursor(g *gate, seq int64) {
	sess := g.sess
	sess.mu.Lock()
	if wm := sess.cursors[g.inbox]; wm != nil && wm.w > seq {
		sess.cursors[g.inbox] = &watermark{w: seq}
	}
	sess.mu.Unlock()
	f.acks.lowerCursor(sess.id, g.inbox, seq)
}

// startingPoint returns the seq after which the device needs entries: its
// cursor in memory, else in the store; a device new to the inbox (or on a
// clean start) starts at the inbox's end (fromEnd).
func (f *fanout) startingPoint(g *gate) (after int64, fromEnd, ok bool) {
	sess := g.sess
	sess.mu.Lock()
	wm := sess.cursors[g.inbox]
	fresh := sess.fresh
	sess.mu.Unlock()
	if wm != nil {
		sess.mu.Lock()
		w := max(wm.w, g.resumeAfter)
		sess.mu.Unlock()
		return w, false, true
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), f.cfg.StoreTimeout)
		var seq int64
		var err error
		if !fresh {
			seq, err = f.store.GetCursor(ctx, sess.id, g.inbox)
		}
		if fresh || errors.Is(err, storage.ErrNotFound) {
			fromEnd = true
			f.regMu.Lock()
			end, hasEnd := g.end, g.hasEnd
			f.regMu.Unlock()
			if hasEnd {
				seq, err = end, nil // read when the subscription was granted
			} else {
				seq, err = f.store.LastSeq(ctx, g.inbox)
			}
			if err == nil {
				// Entries stored after the subscription began but before
				// LastSeq was read are the device's, not history.
				f.regMu.Lock()
				if g.first > 0 && g.first-1 < seq {
					seq = g.first - 1
				}
				f.regMu.Unlock()
				// Record the new device's starting point at once, so that
				// what arrives before its first acknowledgement is not lost
				// if it disconnects.
				f.acks.setCursor(sess.id, g.inbox, seq)
			}
		}
		cancel()
		if err == nil {
			sess.mu.Lock()
			if cur := sess.cursors[g.inbox]; cur == nil {
				sess.cursors[g.inbox] = &watermark{w: seq}
			} else {
				seq, fromEnd = cur.w, false
			}
			sess.mu.Unlock()
			return seq, fromEnd, true
		}
		fromEnd = false
		f.log.Warn("catch-up cursor", "client", sess.id, "inbox", g.inbox, "error", err)
		if !f.pause(g, time.Second) {
			return 0, false, false
		}
	}
}

// pause waits d unless the client leaves or the hook stops.
func (f *fanout) pause(g *gate, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !g.cl.Closed()
	case <-f.w.quit:
		return false
	}
}

// sendDirect writes one stored entry to the device, outside mochi's fan-out,
// with the packet id and inflight bookkeeping mochi would do, keeping at most
// CatchupWindow entries unacknowledged.
func (f *fanout) sendDirect(g *gate, e protocol.Entry) bool {
	cl, sess := g.cl, g.sess
	// Half the slow-consumer bound, so that live deliveries arriving just
	// after the catch-up still fit.
	window := min(f.cfg.CatchupWindow, max(f.cfg.MaxInflight/2, 1))
	if rm := int(cl.Properties.Props.ReceiveMaximum); rm > 0 && rm < window {
		window = rm
	}
	waitSince := time.Now()
	for g.qos > 0 && f.mq.inflightLen(cl) >= window {
		if time.Since(waitSince) > f.cfg.CatchupAckWait {
			// A device that acknowledges nothing while its window is full
			// is a slow consumer in catch-up too (live, MaxInflight says
			// so): it catches up when it comes back.
			f.slowConsumer(cl, "no acknowledgement during catch-up")
			return false
		}
		sess.mu.Lock()
		wait := sess.ackWait
		sess.mu.Unlock()
		t := time.NewTimer(time.Second)
		select {
		case <-wait:
		case <-t.C:
		case <-f.w.quit:
			t.Stop()
			return false
		}
		t.Stop()
		if cl.Closed() || g.live.Load() {
			return false
		}
	}
	out := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: g.qos},
		TopicName:   e.Inbox,
		Payload:     e.AppendJSON(nil),
		Created:     time.Now().Unix(),
	}
	if g.qos > 0 {
		sess.mu.Lock()
		if sess.cl != cl || sess.gates[g.inbox] != g {
			sess.mu.Unlock()
			return false // the connection or the subscription was replaced
		}
		g.sent.Store(e.Seq) // decided under sess.mu: a superseding gate starts after it
		id, ok := f.mq.freePacketID(cl, &sess.nextID)
		if !ok {
			sess.mu.Unlock()
			f.slowConsumer(cl, "packet ids exhausted")
			return false
		}
		out.PacketID = id
		sess.inflight[out.PacketID] = protocol.Header{ID: e.ID, Inbox: e.Inbox, Seq: e.Seq, From: e.From, To: e.To, Type: e.Type}
		sess.mu.Unlock()
		f.mq.track(cl, out)
	}
	if err := f.mq.write(cl, out); err != nil {
		return false
	}
	return true
}
