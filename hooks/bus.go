package hooks

import (
	"context"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Bus carries stored entries between the nodes of a cluster. An entry is
// fanned out to this node's subscribers directly, then announced once on the
// bus; the other nodes with interest in its inbox hand it to Inbox.Receive,
// which fans it out through the same gate-aware path as a local entry, so
// the catch-up → live hand-over stays exactly-once whichever node stored the
// entry. The store is the durable copy: a bus may lose an announcement (it
// is at most once); a device that misses one gets it from catch-up.
//
// With no bus (a single node) Announce has nobody to tell: local fan-out is
// all there is.
type Bus interface {
	// Announce publishes a stored entry's payload (as sent to devices) to the
	// other nodes watching its inbox. It must not block on the network.
	Announce(inbox string, seq int64, payload []byte)
	// Watch starts this node's interest in the inboxes a subscription
	// filter matches; Unwatch ends it. Called on each change of the set of
	// local subscriptions to a filter, under a lock: neither may block on
	// the network.
	Watch(filter string)
	Unwatch(filter string)
	// Barrier returns once every Watch called before it is in effect: an
	// entry announced by any node from then on reaches this one.
	Barrier(ctx context.Context) error
	// ClaimSession tells the other nodes that a connection with client id
	// cid began here at at: a node holding a session with that id ends it
	// (Inbox.EndSession), as MQTT requires of a takeover. This node hears
	// the claims of others for cid until ReleaseSession. Neither blocks.
	ClaimSession(cid string, at time.Time)
	ReleaseSession(cid string)
}

// UseBus connects the hook to the other nodes of a cluster. Call it before
// Start; the bus calls Receive with the entries of other nodes and Resync
// when it comes back after an outage.
func (h *Inbox) UseBus(b Bus) { h.fan.useBus(b) }

// Receive fans out an entry stored and announced by another node to this
// node's subscribers of its inbox.
func (h *Inbox) Receive(inbox string, seq int64, payload []byte) { h.fan.receive(inbox, seq, payload) }

// Resync sends every connected device with a persistent session what it may
// have missed while the bus was down (fanout.resync).
func (h *Inbox) Resync() { h.fan.resync() }

func (f *fanout) useBus(b Bus) { f.bus, f.interest.bus, f.interest.gaps = b, b, f.gaps }

func (f *fanout) receive(inbox string, seq int64, payload []byte) {
	if f.w.closed.Load() {
		return
	}
	var qos byte
	if seq > 0 {
		qos = 1 // stored entries; typing (seq 0) is never stored
	}
	f.local(inbox, seq, payload, qos)
}

// resync sends every connected device with a persistent session what it may
// have missed while the bus was down: each of its live inbox subscriptions
// catches up from its cursor again (entries it has but has not acknowledged
// are sent again; clients drop repeats by seq). Devices with clean sessions
// have no cursor: what they missed is in the history API.
func (f *fanout) resync() {
	if f.w.closed.Load() {
		return
	}
	n := 0
	f.sessions.each(func(sess *session) bool {
		cl, persistent := sess.connected()
		if cl == nil || cl.Closed() || !persistent {
			return true
		}
		for filter, sub := range f.mq.subscriptions(cl) {
			if !isInboxTopic(filter) || strings.ContainsAny(filter, "+#") {
				continue
			}
			if g := sess.gateOf(filter); g != nil && !g.live.Load() {
				continue // catching up already
			}
			f.startCatchup(f.openGate(sess, cl, filter, sub.Qos))
			n++
		}
		return true
	})
	f.metrics.Resyncs.Add(float64(n))
	f.log.Info("bus back: devices catch up on what it missed", "subscriptions", n)
}

// interest is the set of subscription filters this node's clients hold
// that match inbox topics, by client id: the bus watches a filter while one
// client holds it. Keyed by client id, so a session taken over by a new
// connection with the same id keeps its interest.
type interest struct {
	mu      sync.Mutex
	bus     Bus
	gaps    *gapTracker                    // tracks the inboxes watched by name
	filters map[string]map[string]struct{} // filter -> client ids
	clients map[string]map[string]struct{} // client id -> filters
}

func newInterest() *interest {
	return &interest{filters: map[string]map[string]struct{}{}, clients: map[string]map[string]struct{}{}}
}

// busFilter reports whether a subscription filter can match inbox or
// presence topics: their changes come from every node.
func busFilter(filter string) bool {
	first, _, _ := strings.Cut(filter, "/")
	switch first {
	case "u", "g", "p", "+", "#":
		return true
	}
	return false
}

// add records that client cid holds filter; it reports whether the bus
// watches the filter from now on (it did not before).
func (in *interest) add(cid, filter string) (watched bool) {
	if in.bus == nil || !busFilter(filter) {
		return false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	cs := in.filters[filter]
	if cs == nil {
		cs = map[string]struct{}{}
		in.filters[filter] = cs
		in.bus.Watch(filter)
		if in.gaps != nil && isInboxTopic(filter) && !strings.ContainsAny(filter, "+#") {
			in.gaps.watch(filter)
		}
		watched = true
	}
	cs[cid] = struct{}{}
	fs := in.clients[cid]
	if fs == nil {
		fs = map[string]struct{}{}
		in.clients[cid] = fs
	}
	fs[filter] = struct{}{}
	return watched
}

func (in *interest) remove(cid, filter string) {
	if in.bus == nil {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.removeLocked(cid, filter)
}

func (in *interest) removeLocked(cid, filter string) {
	cs := in.filters[filter]
	if _, ok := cs[cid]; !ok {
		return
	}
	delete(cs, cid)
	if len(cs) == 0 {
		delete(in.filters, filter)
		in.bus.Unwatch(filter)
		if in.gaps != nil {
			in.gaps.forget(filter)
		}
	}
	if fs := in.clients[cid]; fs != nil {
		delete(fs, filter)
		if len(fs) == 0 {
			delete(in.clients, cid)
		}
	}
}

// removeClient drops every filter of a client id (its session expired).
func (in *interest) removeClient(cid string) {
	if in.bus == nil {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for f := range in.clients[cid] {
		in.removeLocked(cid, f)
	}
}

// subscribedClient reports whether cl is a client whose subscriptions count
// for the bus (not the server's inline client).
func subscribedClient(cl *mqtt.Client) bool { return cl != nil && !cl.Net.Inline }

// barrier waits until the bus's interest reaches the other nodes, if there
// is a bus.
func (f *fanout) barrier() {
	if f.bus == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.StoreTimeout)
	defer cancel()
	if err := f.bus.Barrier(ctx); err != nil {
		// The bus is down: Resync runs when it is back.
		f.log.Debug("bus barrier", "error", err)
	}
}

// EndSession ends this node's session with client id cid, because a
// connection with that id began on another node at at (a takeover across
// nodes): a connected client is disconnected with 0x8E session taken over
// (MQTT 3.1.1: closed), its will handled as for any takeover, and the
// session is forgotten here, since it lives on the other node now (its
// cursors are in the store). A connection here that began after at is the
// newer one, and stays.
func (h *Inbox) EndSession(cid string, at time.Time) {
	cl, ok := h.mq.client(cid)
	if !ok {
		return
	}
	if sess := h.sessions.of(cl); sess != nil {
		sess.mu.Lock()
		newer := sess.cl == cl && sess.since.After(at)
		sess.mu.Unlock()
		if newer {
			return
		}
	}
	if !cl.Closed() {
		h.log.Info("session taken over on another node", "client", cid)
		h.mq.disconnect(cl, packets.ErrSessionTakenOver)
	}
	if !h.mq.expireSession(cid, cl) {
		return
	}
	h.OnClientExpired(cl)
	h.metrics.RemoteTakeovers.Inc()
}

// releaseSession ends the node's interest in claims of cid, if there is a
// bus.
func (h *Inbox) releaseSession(cid string) {
	if h.fan.bus != nil {
		h.fan.bus.ReleaseSession(cid)
	}
}
