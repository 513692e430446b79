package hooks

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// openGate registers a catch-up for (session, inbox): from now on live
// deliveries of inbox to this connection are held back (AllowDelivery) and
// every entry stored in inbox marks the gate dirty.
func (h *Inbox) openGate(sess *session, cl *mqtt.Client, inbox string, qos byte) *gate {
	if qos > 1 {
		qos = 1
	}
	g := &gate{sess: sess, cl: cl, inbox: inbox, qos: qos}
	h.regMu.Lock()
	sess.mu.Lock()
	if old := sess.gates[inbox]; old != nil {
		old.live.Store(true) // superseded: its goroutine stops at its next step
		h.unregister(old)
		if old.cl == cl {
			// Same connection: what the old catch-up sent is in flight to
			// it already; the new one starts after it.
			g.resumeAfter = old.sent.Load()
		}
	}
	sess.gates[inbox] = g
	sess.mu.Unlock()
	h.catching[inbox] = append(h.catching[inbox], g)
	h.regMu.Unlock()
	return g
}

// unregister removes g from the inbox registry. h.regMu must be held.
func (h *Inbox) unregister(g *gate) {
	gs := h.catching[g.inbox]
	for i, x := range gs {
		if x == g {
			gs = append(gs[:i], gs[i+1:]...)
			break
		}
	}
	if len(gs) == 0 {
		delete(h.catching, g.inbox)
	} else {
		h.catching[g.inbox] = gs
	}
}

// closeGate ends a catch-up without going live (refused or removed
// subscription, or the client left).
func (h *Inbox) closeGate(g *gate) {
	h.regMu.Lock()
	h.unregister(g)
	g.sess.mu.Lock()
	if g.sess.gates[g.inbox] == g {
		delete(g.sess.gates, g.inbox)
	}
	g.sess.mu.Unlock()
	h.regMu.Unlock()
}

func (h *Inbox) startCatchup(g *gate) {
	h.metrics.Catchups.Inc()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if !h.catchup(g) {
			h.closeGate(g)
		}
	}()
}

// catchup sends the device every stored entry of the inbox after its cursor,
// in order, then lets live deliveries through. It reports whether it went
// live.
func (h *Inbox) catchup(g *gate) bool {
	// Entries announced by other nodes from here on reach this node; those
	// announced before are in the store when it is read below.
	h.barrier()
	after, fromEnd, ok := h.startingPoint(g)
	if !ok {
		return false
	}
	g.start, g.fromEnd = after, fromEnd
	h.log.Debug("catch-up", "client", g.sess.id, "inbox", g.inbox, "after", after)
	// Everything up to the starting point is the device's already (its
	// cursor, or where a superseded catch-up got to): a late live delivery
	// of it would be a repeat.
	if after > g.sent.Load() {
		g.sent.Store(after)
	}
	for {
		if g.cl.Closed() || g.live.Load() || h.closed.Load() {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
		es, err := h.store.Read(ctx, g.inbox, after, h.cfg.CatchupBatch)
		cancel()
		if err != nil {
			h.log.Warn("catch-up read", "client", g.sess.id, "inbox", g.inbox, "error", err)
			if !h.pause(g, time.Second) {
				return false
			}
			continue
		}
		for _, e := range es {
			if !h.sendDirect(g, e) {
				return false
			}
			after = e.Seq
		}
		h.metrics.CatchupEntries.Add(float64(len(es)))
		if len(es) == h.cfg.CatchupBatch {
			continue
		}
		// Caught up, unless something was stored meanwhile. No delivery to
		// this inbox is under way while the decision is made (deliver holds
		// the delivery lock from marking the gate to the end of the fan-out).
		dl := &h.deliveryShard(g.inbox).mu
		dl.Lock()
		h.regMu.Lock()
		if g.fromEnd && g.first > 0 && g.first-1 < g.start {
			// A device new to the inbox starts at its end, read from the
			// store; an entry committed before that read but fanned out
			// only after the gate opened (its publisher had not reached
			// deliver yet) is the device's, and was held back from it:
			// start again before it.
			g.start, after = g.first-1, g.first-1
			g.dirty = false
			h.regMu.Unlock()
			dl.Unlock()
			h.rewindCursor(g, after)
			continue
		}
		if g.dirty {
			g.dirty = false
			h.regMu.Unlock()
			dl.Unlock()
			continue
		}
		g.live.Store(true)
		h.unregister(g)
		h.regMu.Unlock()
		dl.Unlock()
		h.log.Debug("caught up", "client", g.sess.id, "inbox", g.inbox, "seq", after)
		return true
	}
}

// rewindCursor lowers a new device's starting cursor to seq.
func (h *Inbox) rewindCursor(g *gate, seq int64) {
	sess := g.sess
	sess.mu.Lock()
	if wm := sess.cursors[g.inbox]; wm != nil && wm.w > seq {
		sess.cursors[g.inbox] = &watermark{w: seq}
	}
	sess.mu.Unlock()
	h.cursorMu.Lock()
	if cur, ok := h.dirty[cursorKey{sess.id, g.inbox}]; !ok || cur > seq {
		h.dirty[cursorKey{sess.id, g.inbox}] = seq
	}
	h.cursorMu.Unlock()
}

// startingPoint returns the seq after which the device needs entries: its
// cursor in memory, else in the store; a device new to the inbox (or on a
// clean start) starts at the inbox's end (fromEnd).
func (h *Inbox) startingPoint(g *gate) (after int64, fromEnd, ok bool) {
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
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
		var seq int64
		var err error
		if !fresh {
			seq, err = h.store.GetCursor(ctx, sess.id, g.inbox)
		}
		if fresh || errors.Is(err, storage.ErrNotFound) {
			fromEnd = true
			seq, err = h.store.LastSeq(ctx, g.inbox)
			if err == nil {
				// Entries stored after the subscription began but before
				// LastSeq was read are the device's, not history.
				h.regMu.Lock()
				if g.first > 0 && g.first-1 < seq {
					seq = g.first - 1
				}
				h.regMu.Unlock()
				// Record the new device's starting point at once, so that
				// what arrives before its first acknowledgement is not lost
				// if it disconnects.
				h.cursorMu.Lock()
				h.dirty[cursorKey{sess.id, g.inbox}] = seq
				h.cursorMu.Unlock()
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
		h.log.Warn("catch-up cursor", "client", sess.id, "inbox", g.inbox, "error", err)
		if !h.pause(g, time.Second) {
			return 0, false, false
		}
	}
}

// pause waits d unless the client leaves or the hook stops.
func (h *Inbox) pause(g *gate, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !g.cl.Closed()
	case <-h.quit:
		return false
	}
}

// sendDirect writes one stored entry to the device, outside mochi's fan-out,
// with the packet id and inflight bookkeeping mochi would do, keeping at most
// CatchupWindow entries unacknowledged.
func (h *Inbox) sendDirect(g *gate, e protocol.Entry) bool {
	cl, sess := g.cl, g.sess
	// Half the slow-consumer bound, so that live deliveries arriving just
	// after the catch-up still fit.
	window := min(h.cfg.CatchupWindow, max(h.cfg.MaxInflight/2, 1))
	if rm := int(cl.Properties.Props.ReceiveMaximum); rm > 0 && rm < window {
		window = rm
	}
	waitSince := time.Now()
	for g.qos > 0 && cl.State.Inflight.Len() >= window {
		if time.Since(waitSince) > h.cfg.CatchupAckWait {
			// A device that acknowledges nothing while its window is full
			// is a slow consumer in catch-up too (live, MaxInflight says
			// so): it catches up when it comes back.
			h.slowConsumer(cl, "no acknowledgement during catch-up")
			return false
		}
		sess.mu.Lock()
		wait := sess.ackWait
		sess.mu.Unlock()
		t := time.NewTimer(time.Second)
		select {
		case <-wait:
		case <-t.C:
		case <-h.quit:
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
		id, ok := directPacketID(sess, cl)
		if !ok {
			sess.mu.Unlock()
			h.slowConsumer(cl, "packet ids exhausted")
			return false
		}
		out.PacketID = id
		sess.inflight[out.PacketID] = protocol.Header{ID: e.ID, Inbox: e.Inbox, Seq: e.Seq, From: e.From, To: e.To, Type: e.Type}
		sess.mu.Unlock()
		if cl.State.Inflight.Set(out) {
			atomic.AddInt64(&h.srv.Info.Inflight, 1)
		}
	}
	if err := cl.WritePacket(out); err != nil {
		return false
	}
	return true
}

// directPacketID picks a free packet id for a catch-up delivery from the
// upper half of the id space. mochi numbers its own deliveries from 1 up, and
// it refuses a client's SUBSCRIBE whose packet id is in use by an
// unacknowledged delivery (0x91); clients number their SUBSCRIBEs from 1 up
// too, and subscribe right after reconnecting, which is when catch-up sends.
// sess.mu must be held.
func directPacketID(sess *session, cl *mqtt.Client) (uint16, bool) {
	for range 1 << 15 {
		sess.nextID++
		if sess.nextID < 1<<15 {
			sess.nextID = 1 << 15
		}
		if _, used := cl.State.Inflight.Get(sess.nextID); !used {
			return sess.nextID, true
		}
	}
	return 0, false
}
