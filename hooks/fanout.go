package hooks

import (
	"context"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/protocol"
)

// catchupStore is what catch-up and gap repair read.
type catchupStore interface {
	Read(ctx context.Context, inbox string, after int64, limit int) ([]protocol.Entry, error)
	LastSeq(ctx context.Context, inbox string) (int64, error)
	GetCursor(ctx context.Context, clientID, inbox string) (int64, error)
}

// fanout gets stored entries to devices, exactly once and in order: live
// through mochi's fan-out (deliver, local), from the store to a device that
// was away (catch-up: catchup.go), and the hand-over between the two
// (gates). In a cluster it announces entries on the bus and takes the other
// nodes' (bus.go), and repairs what never arrived (gaps.go). README.md
// explains the hand-over step by step.
type fanout struct {
	cfg      *InboxConfig
	log      *slog.Logger
	store    catchupStore
	metrics  *Metrics
	mq       broker
	now      func() time.Time
	w        *workers
	members  *members
	acks     *acks
	sessions *sessionTable

	// delivering serialises the deliveries of each shard of inboxes: local
	// holds a shard's lock from marking catching-up gates until the broker
	// has fanned the entry out, and records the entry as the shard's
	// current one, which allow (called by that fan-out, on the same
	// goroutine) compares with what a catch-up has already sent. A catch-up
	// going live takes the lock too. So every entry reaches a catching-up
	// device exactly once: read by its catch-up or delivered live.
	delivering [64]deliveryShard
	holding    atomic.Int64       // inboxes holding entries for order, over all shards (order.go)
	regMu      sync.Mutex         // guards catching and the gates' dirty and first
	catching   map[string][]*gate // inbox -> gates of devices catching up on it

	bus      Bus         // the cluster's; nil on a single node
	gaps     *gapTracker // in a cluster: entries that did not reach this node (gaps.go)
	interest *interest   // the inbox filters this node's clients subscribe to, for the bus

	// step, when set (tests), is called at each step of a catch-up that
	// another goroutine's delivery may interleave with.
	step func(g *gate, at catchupStep)
}

// catchupStep names the points of a catch-up where a delivery of the same
// inbox may come between (fanout.step).
type catchupStep int

const (
	stepStart   catchupStep = iota // the catch-up began; the store is not read yet
	stepStarted                    // its starting point is known
	stepRead                       // it read a batch of entries and sent them
	stepLive                       // it went live
)

func newFanout(cfg *InboxConfig, store catchupStore, mq broker, m *Metrics, w *workers, mem *members, a *acks,
	st *sessionTable, log *slog.Logger) *fanout {
	return &fanout{cfg: cfg, log: log, store: store, metrics: m, mq: mq, now: time.Now, w: w, members: mem, acks: a,
		sessions: st, catching: map[string][]*gate{}, interest: newInterest(), gaps: newGapTracker()}
}

// deliver hands a stored entry to its inbox's live subscribers: on this
// node (local), and on the others through the bus.
func (f *fanout) deliver(e protocol.Entry, qos byte) {
	payload := e.AppendJSON(nil)
	if f.bus != nil {
		f.bus.Announce(e.Inbox, e.Seq, payload)
	}
	f.local(e.Inbox, e.Seq, payload, qos)
}

// local hands an entry, stored here or by another node, to the broker for
// its inbox's subscribers on this node, in seq order (order.go: an entry
// whose predecessor is still on its way waits for it, briefly). Devices
// catching up on the inbox are told first, so that they read it from the
// store before going live.
func (f *fanout) local(inbox string, seq int64, payload []byte, qos byte) {
	sh := f.shard(inbox)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	f.inOrder(sh, inbox, seq, payload, qos)
}

// publishLocked hands one entry to the broker. The shard's lock is held.
func (f *fanout) publishLocked(sh *deliveryShard, inbox string, seq int64, payload []byte, qos byte) {
	sh.current.Store(&current{inbox: inbox, seq: seq})
	defer sh.current.Store(nil)
	if seq > 0 {
		f.regMu.Lock()
		for _, g := range f.catching[inbox] {
			g.dirty = true
			if g.first == 0 || seq < g.first {
				g.first = seq
			}
		}
		f.regMu.Unlock()
	}
	if err := f.mq.publish(inbox, payload, false, qos); err != nil {
		f.log.Warn("deliver", "inbox", inbox, "seq", seq, "error", err)
	}
	if f.bus != nil {
		f.gaps.seen(inbox, seq, f.now())
	}
}

var lockSeed = maphash.MakeSeed()

type deliveryShard struct {
	mu      sync.Mutex
	current atomic.Pointer[current] // the entry being fanned out, if any
	orders  map[string]*inboxOrder  // inbox -> its next seq and the entries held for it (order.go); guarded by mu
	holding int                     // how many of orders hold entries; guarded by mu
}

type current struct {
	inbox string
	seq   int64
}

func (f *fanout) shard(inbox string) *deliveryShard {
	return &f.delivering[maphash.String(lockSeed, inbox)%uint64(len(f.delivering))]
}

// allow implements DeliveryGate for inbox topics. It runs on the
// publisher's goroutine for every subscriber of the topic on this node: it
// refuses deliveries to subscriptions still catching up, to removed group
// members and, of entries from before a member joined (a member added back
// while an entry stored before is fanned out), to that member; and it
// disconnects subscribers whose unacknowledged deliveries overflow.
func (f *fanout) allow(cl *mqtt.Client, topic string) bool {
	// Unacknowledged deliveries, counted once for both windows below, and
	// the seq of the entry local is fanning out (0 for typing, which is
	// never stored; -1 when this check is not part of local's fan-out).
	inflight := f.mq.inflightLen(cl)
	seq := int64(-1)
	if cur := f.shard(topic).current.Load(); cur != nil && cur.inbox == topic {
		seq = cur.seq
	}
	if sess := f.sessions.of(cl); sess != nil {
		if strings.HasPrefix(topic, protocol.GroupPrefix) && !sess.admin {
			from, ok := f.members.member(topic[len(protocol.GroupPrefix):], sess.user)
			if !ok {
				return false // removed, or a subscription from before a change made on another node
			}
			if seq > 0 && seq < from {
				return false // stored before the member joined
			}
		}
		g := sess.gateOf(topic)
		if g != nil && !g.live.Load() {
			// Catching up: it reads this entry from the store. (Checked
			// before the inflight window, which catch-up itself fills.)
			// Entries that are never stored (seq 0: typing) go live at
			// once: catch-up cannot send them.
			return seq == 0
		}
		if g != nil {
			// Live, but a catch-up that just finished may have sent this
			// entry already (it was stored before the catch-up read, and
			// is fanned out only now).
			// For a device new to the inbox, an entry at or below its
			// starting point was not sent by the catch-up: committed before
			// the start was read, it reaches local only now, and is the
			// device's.
			if seq > 0 && seq <= g.sent.Load() && (!g.fromEnd || seq > g.start) {
				return false
			}
		}
		if f.overReceiveMaximum(sess, cl, topic, seq, inflight) {
			return false
		}
	}
	if inflight >= f.cfg.MaxInflight {
		f.slowConsumer(cl, "inflight window full")
		return false
	}
	return true
}

// overReceiveMaximum honours an MQTT 5 client's Receive Maximum for live
// inbox deliveries [MQTT-3.3.4-9]: when as many QoS 1 deliveries as it
// announced await its PUBACKs, the entry being fanned out is not sent now.
// The subscription switches to catch-up from that entry on: catch-up sends
// from the store as PUBACKs free the window (it keeps to the Receive
// Maximum), then goes live again with the usual exactly-once hand-over.
// So a client that asks for a small window gets every entry, in order, at
// its own pace, and nothing waits in memory (mochi's send quota, which
// serves plain topics, would hold them in its inflight map). Runs in
// local, under the inbox's delivery lock; seq is the entry's.
func (f *fanout) overReceiveMaximum(sess *session, cl *mqtt.Client, topic string, seq int64, inflight int) bool {
	rm := int(cl.Properties.Props.ReceiveMaximum)
	if seq <= 0 || cl.Properties.ProtocolVersion != 5 || rm == 0 || sess.admin || inflight < rm {
		return false // typing (seq 0, QoS 0) is not counted by the window
	}
	sub, ok := f.mq.subscription(cl, topic)
	if !ok || sub.Qos == 0 {
		return false
	}
	sess.mu.Lock()
	if sess.cl != cl {
		sess.mu.Unlock()
		return false
	}
	if sess.cursors[topic] == nil {
		// A session without cursors (clean, or new to this inbox): catch-up
		// starts from what it was sent live, not from the inbox's end.
		sess.cursors[topic] = &watermark{w: seq - 1}
	}
	sess.mu.Unlock()
	g := f.openGate(sess, cl, topic, sub.Qos)
	g.resumeAfter = max(g.resumeAfter, seq-1)
	f.metrics.Deferred.Inc()
	f.startCatchup(g)
	return true
}

// slowConsumer disconnects a subscriber that does not keep up: catch-up on
// its return gives it what it missed.
func (f *fanout) slowConsumer(cl *mqtt.Client, why string) {
	if cl.Closed() {
		return
	}
	f.metrics.SlowConsumers.Inc()
	f.log.Warn("disconnecting slow consumer", "client", cl.ID, "reason", why)
	cl.Stop(packets.ErrQuotaExceeded)
}

// subscribing puts each inbox subscription of a persistent session into
// catch-up before mochi adds it, so that no live delivery overtakes the
// stored backlog. A repeated subscription is removed first, so that the
// Auth hook sees a new subscription and authorises it. Runs on the
// client's read goroutine; no I/O.
func (f *fanout) subscribing(cl *mqtt.Client, sess *session, filters packets.Subscriptions) {
	for _, sub := range filters {
		if !isInboxTopic(sub.Filter) {
			continue
		}
		f.mq.unsubscribe(cl, sub.Filter)
		if sess.persistent && !strings.ContainsAny(sub.Filter, "+#") {
			f.openGate(sess, cl, sub.Filter, sub.Qos)
		}
	}
}

// subscribed starts the catch-ups of granted subscriptions and drops the
// gates of refused ones. In a cluster, the node's interest in the inboxes
// reaches the bus first: before the SUBACK (mochi sends it after this) and
// before any catch-up reads the store, so that what another node stores
// from then on is announced to this one.
func (f *fanout) subscribed(cl *mqtt.Client, sess *session, filters packets.Subscriptions, codes []byte) {
	if sess == nil {
		return
	}
	granted := func(i int) bool { return i < len(codes) && codes[i] < 0x80 }
	if subscribedClient(cl) {
		watched := false
		for i, sub := range filters {
			if granted(i) && f.interest.add(cl.ID, sub.Filter) {
				watched = true
			}
		}
		if watched {
			f.barrier()
		}
	}
	for i, sub := range filters {
		g := sess.gateOf(sub.Filter)
		if g == nil || g.cl != cl || g.live.Load() {
			continue
		}
		if granted(i) {
			f.markEnd(sess, g)
			f.startCatchup(g)
		} else {
			f.closeGate(g)
		}
	}
}

// markEnd reads, before the SUBACK, where the inbox ends now, for a
// session with no cursor for it in memory, so that a device new to the
// inbox starts there and not where the inbox ends when its catch-up gets
// to run: that may be after the device has left again and a message has
// come in (a busy node, a device that subscribes and drops at once), and a
// starting point read then would count the message as history and never
// give it to the device. A failed read leaves the catch-up to read the end
// itself, as before. One read of the inboxes table per subscription of a
// session new to this node; a resumed session (cursors in memory) costs
// none.
func (f *fanout) markEnd(sess *session, g *gate) {
	sess.mu.Lock()
	known := sess.cursors[g.inbox] != nil
	sess.mu.Unlock()
	if known {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.StoreTimeout)
	defer cancel()
	if seq, err := f.store.LastSeq(ctx, g.inbox); err == nil {
		f.regMu.Lock()
		g.end, g.hasEnd = seq, true
		f.regMu.Unlock()
	}
}

// unsubscribed stops catch-ups of removed subscriptions and the node's
// interest in them. mochi also reports the subscriptions it moves off a
// connection whose session is taken over; those belong to the new
// connection now and are left alone.
func (f *fanout) unsubscribed(cl *mqtt.Client, sess *session, filters packets.Subscriptions) {
	if subscribedClient(cl) && !cl.IsTakenOver() {
		for _, sub := range filters {
			f.interest.remove(cl.ID, sub.Filter)
		}
	}
	if sess == nil {
		return
	}
	for _, sub := range filters {
		if g := sess.gateOf(sub.Filter); g != nil && g.cl == cl {
			f.closeGate(g)
		}
	}
}

// unsubscribe removes a client's subscription to topic, as if it had
// unsubscribed (a removed group member).
func (f *fanout) unsubscribe(cl *mqtt.Client, topic string) {
	if !f.mq.unsubscribe(cl, topic) {
		return
	}
	f.interest.remove(cl.ID, topic)
	if sess := f.sessions.of(cl); sess != nil {
		if g := sess.gateOf(topic); g != nil {
			f.closeGate(g)
		}
	}
}

// resume prepares the subscriptions cl inherits from existing, the
// previous connection of a persistent session: inbox deliveries the old
// connection left unacknowledged are dropped from mochi's inflight store
// (catch-up resends them, in order), and the inherited inbox subscriptions
// start in catch-up (startResumed, once the session is established).
func (f *fanout) resume(sess *session, cl, existing *mqtt.Client) {
	f.mq.dropInboxInflights(existing)
	if !sess.persistent {
		return
	}
	for filter, sub := range f.mq.subscriptions(existing) {
		if isInboxTopic(filter) {
			f.openGate(sess, cl, filter, sub.Qos)
		}
	}
}

// startResumed starts the catch-ups resume opened for cl.
func (f *fanout) startResumed(sess *session, cl *mqtt.Client) {
	sess.mu.Lock()
	var gs []*gate
	for _, g := range sess.gates {
		if g.cl == cl {
			gs = append(gs, g)
		}
	}
	sess.mu.Unlock()
	for _, g := range gs {
		f.startCatchup(g)
	}
}
