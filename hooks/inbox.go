package hooks

import (
	"context"
	"log/slog"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Store is what the Inbox hook needs from storage.
type Store interface {
	Append(ctx context.Context, m storage.Message) ([]protocol.Entry, bool, error)
	Read(ctx context.Context, inbox string, after int64, limit int) ([]protocol.Entry, error)
	LastSeq(ctx context.Context, inbox string) (int64, error)
	GetCursor(ctx context.Context, clientID, inbox string) (int64, error)
	SaveCursors(ctx context.Context, cs []storage.Cursor) error
	DeliveryStore // delivered receipts (receipts.go)
}

// InboxConfig configures the Inbox hook.
type InboxConfig struct {
	// MaxPayload is the largest payload accepted into an inbox. Default 64 KiB.
	MaxPayload int
	// StoreTimeout bounds the wait for a commit in OnPublish. Default 5s.
	StoreTimeout time.Duration
	// Rate is each connection's sustained publish rate, per second; Burst
	// its burst. Defaults 50 and 100. A negative Rate disables the limit.
	// Every publish of a user counts, refused ones too (administrators'
	// are not limited).
	Rate  float64
	Burst int
	// UserRate and UserBurst limit the publishes of all of a user's
	// connections together, so that more connections do not buy more
	// rate. Defaults twice Rate and twice Burst (100 and 200); when Rate
	// is negative and UserRate unset, off. A negative UserRate disables
	// the limit.
	//
	// In a cluster (Inbox.UseSpread) more nodes do not buy more rate
	// either: each node holding connections of the user allows its share,
	// UserRate/k and UserBurst/k (at least 1), k being the live nodes that
	// hold one, asked in the background at most every UserShareRefresh
	// while the user publishes. A user new on a node has the whole rate
	// there until the first answer (a moment after its first publish), and
	// a node learns of the user's connections on other nodes at its next
	// refresh; without an answer (NATS away) the last known share stays.
	//
	// A publish over a limit is refused with 0x97 in the PUBACK of an MQTT
	// 5 client at QoS 1. Other publishes (MQTT 3.1.1, QoS 0) have no code
	// to carry it and are never acknowledged unstored: the client's read
	// goroutine waits for the limit (at most maxRateWait, 2s), which slows
	// the client down through TCP, or the client is disconnected.
	UserRate  float64
	UserBurst int
	// UserShareRefresh is how old a user's share of UserRate between the
	// nodes of a cluster may get before a publish of the user has it
	// asked for again. Default 2s.
	UserShareRefresh time.Duration
	// RateStrikes is how many refusals for rate a connection may collect
	// within StrikeWindow; one more and it is disconnected (MQTT 5:
	// DISCONNECT 0x96 message rate too high). Defaults 100 and 10s.
	RateStrikes  int
	StrikeWindow time.Duration
	// ErrorEntries is how many error entries (refused publishes of MQTT
	// 3.1.1 and QoS 0 clients) are stored per user per ErrorWindow; the
	// refusals beyond it are acknowledged without one, counted in the next
	// error entry stored ("suppressed") and in
	// parley_error_entries_suppressed_total. Defaults 10 and 1m.
	ErrorEntries int
	ErrorWindow  time.Duration
	// MaxTopicLen and MaxTopicLevels bound the topic names of publishes and
	// the filters of subscriptions, administrators' included (Parley's own
	// topics have 2 levels). Publishes beyond them are refused with 0x90,
	// filters with 0x8F (MQTT 3.1.1: 0x80). Defaults 256 bytes, 8 levels.
	MaxTopicLen    int
	MaxTopicLevels int
	// MaxFilters is the most topic filters one SUBSCRIBE may carry; every
	// filter of a larger one is refused with 0x97 (MQTT 3.1.1: 0x80), and
	// nothing of it is subscribed. Default 16.
	MaxFilters int
	// MaxSessionsPerUser is the most persistent sessions a user may hold on
	// this node. A new one beyond it evicts the user's persistent session
	// that has been disconnected longest (see evictSession). Default 32;
	// negative: no limit. Administrators are not limited.
	MaxSessionsPerUser int
	// MaxSessionExpiry is the longest a disconnected persistent session is
	// kept: the broker's maximum session expiry interval, announced to MQTT
	// 5 clients in CONNACK and enforced on DISCONNECT too. Default
	// DefaultMaxSessionExpiry (7 days).
	MaxSessionExpiry time.Duration
	// CatchupBatch is how many entries catch-up reads at a time. Default 256.
	CatchupBatch int
	// CatchupWindow is the most unacknowledged catch-up entries per device.
	// Default 64 (or the client's Receive Maximum if smaller).
	CatchupWindow int
	// CatchupAckWait is how long a catch-up with a full window waits for
	// an acknowledgement before the device is disconnected as a slow
	// consumer (it catches up when it returns). Default 30s.
	CatchupAckWait time.Duration
	// MaxInflight is the most unacknowledged deliveries a subscriber may have
	// before it is disconnected as a slow consumer (it catches up when it
	// comes back). Default 1024.
	MaxInflight int
	// ReceiptDelay is how long acknowledgements are gathered into one
	// delivered receipt. Default 50ms.
	ReceiptDelay time.Duration
	// CursorFlush is how often moved cursors are written. Default 250ms.
	CursorFlush time.Duration
	// GroupCacheTTL is how long group members are remembered; changes made
	// on this node apply at once. Default 5s.
	GroupCacheTTL time.Duration
	// OnDelivered, if set, is told when a device of user acknowledges a
	// message (type msg) someone else sent into inbox: the push service uses
	// it to cancel pushes for messages delivered live. It runs on the
	// device's read goroutine and must not block.
	OnDelivered func(user, inbox, id string)
}

// DefaultMaxSessionExpiry is InboxConfig.MaxSessionExpiry's default.
const DefaultMaxSessionExpiry = 7 * 24 * time.Hour

func (c *InboxConfig) setDefaults() {
	if c.MaxPayload <= 0 {
		c.MaxPayload = 64 << 10
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = 5 * time.Second
	}
	if c.Rate == 0 {
		c.Rate = 50
	}
	if c.Burst <= 0 {
		c.Burst = 100
	}
	if c.UserRate == 0 {
		c.UserRate = 2 * c.Rate // negative (off) when Rate is
	}
	if c.UserBurst <= 0 {
		c.UserBurst = 2 * c.Burst
	}
	if c.UserShareRefresh <= 0 {
		c.UserShareRefresh = 2 * time.Second
	}
	if c.RateStrikes <= 0 {
		c.RateStrikes = 100
	}
	if c.StrikeWindow <= 0 {
		c.StrikeWindow = 10 * time.Second
	}
	if c.ErrorEntries <= 0 {
		c.ErrorEntries = 10
	}
	if c.ErrorWindow <= 0 {
		c.ErrorWindow = time.Minute
	}
	if c.MaxTopicLen <= 0 {
		c.MaxTopicLen = 256
	}
	if c.MaxTopicLevels <= 0 {
		c.MaxTopicLevels = 8
	}
	if c.MaxFilters <= 0 {
		c.MaxFilters = 16
	}
	if c.MaxSessionsPerUser == 0 {
		c.MaxSessionsPerUser = 32
	}
	if c.MaxSessionExpiry <= 0 {
		c.MaxSessionExpiry = DefaultMaxSessionExpiry
	}
	if c.CatchupBatch <= 0 {
		c.CatchupBatch = 256
	}
	if c.CatchupWindow <= 0 {
		c.CatchupWindow = 64
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 1024
	}
	if c.CatchupAckWait <= 0 {
		c.CatchupAckWait = 30 * time.Second
	}
	if c.ReceiptDelay <= 0 {
		c.ReceiptDelay = 50 * time.Millisecond
	}
	if c.CursorFlush <= 0 {
		c.CursorFlush = 250 * time.Millisecond
	}
	if c.GroupCacheTTL <= 0 {
		c.GroupCacheTTL = 5 * time.Second
	}
}

// Inbox is the hook that turns publishes into stored, stamped entries and
// delivers them: live through the broker, and from the store to devices that
// were away. It is thin: each mochi event is handed to the part of Parley
// that owns it:
//
//   - publisher (publish.go, reads.go): policy, stamping and storing, on the
//     publishing client's goroutine, before the PUBACK;
//   - fanout (fanout.go, catchup.go, bus.go, gaps.go): live delivery,
//     catch-up from the store and the exactly-once hand-over between them;
//     the bus between nodes;
//   - acks (acks.go, cursors.go, receipts.go): what devices acknowledged:
//     cursors and delivered and read receipts;
//   - members (members.go): who belongs to which group;
//   - sessionTable (sessions.go, caps.go): Parley's state per client id;
//   - broker (mochi.go): every direct use of mochi's internals.
type Inbox struct {
	mqtt.HookBase
	cfg      *InboxConfig
	log      *slog.Logger
	metrics  *Metrics
	isAdmin  func(string) bool
	now      func() time.Time
	mq       broker
	w        *workers
	sessions *sessionTable
	members  *members
	pub      *publisher
	fan      *fanout
	acks     *acks
}

// NewInbox returns the Inbox hook. srv must have InlineClient enabled.
func NewInbox(cfg InboxConfig, store Store, srv *mqtt.Server, isAdmin func(string) bool, m *Metrics, log *slog.Logger) *Inbox {
	gs, _ := store.(GroupStore)
	cfg.setDefaults()
	if m == nil {
		m = NewMetrics(nil)
	}
	c := &cfg
	mq := broker{srv}
	w := newWorkers()
	sessions := newSessionTable(c.MaxSessionsPerUser)
	mem := newMembers(gs, c.GroupCacheTTL, c.StoreTimeout, log)
	a := newAcks(c, store, m, w, mem, isAdmin, log)
	fan := newFanout(c, store, mq, m, w, mem, a, sessions, log)
	a.deliver = fan.deliver
	return &Inbox{
		cfg: c, log: log, metrics: m, isAdmin: isAdmin, now: time.Now, mq: mq, w: w,
		sessions: sessions, members: mem, acks: a, fan: fan,
		pub: newPublisher(c, store, mq, m, w, mem, a, log),
	}
}

// ID implements mqtt.Hook.
func (h *Inbox) ID() string { return "parley-inbox" }

// Provides implements mqtt.Hook.
func (h *Inbox) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnPublished, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped, mqtt.OnPublishDropped,
		mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnClientExpired, mqtt.OnWill,
		mqtt.OnPacketRead:
		return true
	}
	return false
}

// Start runs the receipt, cursor, user-state, delivery-order and (in a
// cluster) gap repair workers until Close.
func (h *Inbox) Start() {
	h.acks.start()
	h.pub.start()
	h.w.run(h.fan.runOrder)
	if h.fan.bus != nil {
		h.w.run(h.fan.runGaps)
	}
}

// Close stops the workers after a last cursor flush. Safe to call twice.
func (h *Inbox) Close() { h.w.stop() }

// OnSessionEstablish prepares Parley's session before mochi inherits an
// existing one: inbox deliveries the old connection left unacknowledged are
// dropped from mochi's inflight store (catch-up resends them from the store,
// in order), and the inherited inbox subscriptions start in catch-up.
func (h *Inbox) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	sess := h.establish(cl, pk)
	existing, ok := h.mq.client(cl.ID)
	if !ok || pk.Connect.Clean || existing == cl {
		return
	}
	h.fan.resume(sess, cl, existing)
}

// OnSessionEstablished starts catch-up of the inherited subscriptions.
//
// mochi's send quota (the client's Receive Maximum) stays on: it holds
// deliveries on plain topics back until the client's PUBACKs make room, in
// the order they came (third_party patches 4, 10 and 11 removed the deadlock
// and the reordering that once made Parley turn it off). Inbox entries
// never wait in it: a full window switches the subscription to catch-up
// from the store (overReceiveMaximum).
func (h *Inbox) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if sess := h.sessions.of(cl); sess != nil {
		h.fan.startResumed(sess, cl)
	}
}

// OnDisconnect ends the connection's deliveries: unacknowledged inbox
// deliveries are dropped (catch-up resends them), cursors are flushed soon.
func (h *Inbox) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	h.pub.forget(cl)
	sess := h.sessions.of(cl)
	if sess == nil {
		return
	}
	sess.mu.Lock()
	if sess.cl != cl { // taken over: the new connection owns the session now
		sess.mu.Unlock()
		return
	}
	sess.inflight = map[uint16]protocol.Header{}
	sess.stopped = h.now()
	close(sess.ackWait) // wake catch-ups so they see the client is gone
	sess.ackWait = make(chan struct{})
	sess.mu.Unlock()
	if !cl.IsTakenOver() {
		h.mq.dropInboxInflights(cl)
	}
	if expire && !cl.IsTakenOver() {
		if h.sessions.remove(sess) {
			h.releaseSession(cl.ID)
		}
		h.sessions.untrack(sess)
	}
}

// OnClientExpired forgets an expired persistent session.
func (h *Inbox) OnClientExpired(cl *mqtt.Client) {
	sess := h.sessions.of(cl)
	if sess == nil {
		return
	}
	if cur, _ := sess.connected(); cur != cl {
		return
	}
	if h.sessions.remove(sess) {
		h.releaseSession(cl.ID)
	}
	h.sessions.untrack(sess)
	h.fan.interest.removeClient(cl.ID)
}

// OnSubscribe refuses filters beyond MaxTopicLen or MaxTopicLevels before
// mochi adds them to its topic index (whose lock a filter of thousands of
// levels would hold for seconds): they are replaced by an invalid filter,
// which mochi refuses with 0x8F (MQTT 3.1.1: 0x80). Inbox subscriptions of
// persistent sessions start in catch-up (fanout.subscribing). Runs on the
// client's read goroutine; no I/O.
func (h *Inbox) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if !cl.Net.Inline {
		for i, sub := range pk.Filters {
			if _, ok := checkTopic(sub.Filter, h.cfg.MaxTopicLen, h.cfg.MaxTopicLevels); !ok {
				pk.Filters[i].Filter = invalidFilter
			}
		}
	}
	if sess := h.sessions.of(cl); sess != nil {
		h.fan.subscribing(cl, sess, pk.Filters)
	}
	return pk
}

// OnSubscribed starts the catch-ups of granted subscriptions and drops the
// gates of refused ones.
func (h *Inbox) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	h.fan.subscribed(cl, h.sessions.of(cl), pk.Filters, codes)
}

// OnUnsubscribed stops catch-ups of removed subscriptions.
func (h *Inbox) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	h.fan.unsubscribed(cl, h.sessions.of(cl), pk.Filters)
}

// AllowDelivery implements DeliveryGate. It runs on the publisher's goroutine
// for every subscriber of a topic: it refuses deliveries to connections that
// are gone (persistent sessions catch up from the store instead of piling up
// in mochi's inflight store), and leaves inbox topics to the fan-out
// (fanout.allow).
func (h *Inbox) AllowDelivery(cl *mqtt.Client, topic string) bool {
	if cl.Closed() {
		// A persistent session that is away keeps what is published on
		// plain topics (administrators' MQTT) for when it returns, as MQTT
		// requires [MQTT-3.1.2-5]; inbox entries come from the store
		// instead, and presence from its retained state.
		t, ok := protocol.ParseTopic(topic)
		return ok && t.Kind == protocol.KindOther && !strings.HasPrefix(topic, "$")
	}
	if !isInboxTopic(topic) {
		return true
	}
	return h.fan.allow(cl, topic)
}

// OnPublishDropped disconnects a subscriber whose outbound queue overflowed:
// mochi dropped an entry for it, and catch-up on its return is the only way
// it gets it.
func (h *Inbox) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	if isInboxTopic(pk.TopicName) {
		h.fan.slowConsumer(cl, "outbound queue full")
	}
}

// OnQosPublish remembers which entry each outbound packet id carries.
func (h *Inbox) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if sess := h.sessions.of(cl); sess != nil {
		h.acks.sent(cl, sess, pk)
	}
}

// OnQosDropped forgets a delivery mochi gave up on.
func (h *Inbox) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if sess := h.sessions.of(cl); sess != nil {
		h.acks.dropped(sess, pk.PacketID)
	}
}

// OnQosComplete handles a subscriber's PUBACK (acks.acked). mochi reports
// its own PUBACK of the client's publish here too (publisher.ownAck).
func (h *Inbox) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	sess := h.sessions.of(cl)
	if sess == nil || h.pub.ownAck(cl, sess) {
		return
	}
	h.acks.acked(sess, pk.PacketID)
}

// OnPublish stamps, checks and stores what a client publishes into an inbox
// (publisher.publish), before mochi sends the PUBACK.
func (h *Inbox) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	return h.pub.publish(cl, h.sessions.of(cl), pk)
}

// OnPublished delivers what OnPublish stored, after mochi sent the PUBACK.
func (h *Inbox) OnPublished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	p, ok := h.pub.take(cl)
	if !ok {
		return
	}
	for _, e := range p.entries {
		h.fan.deliver(e, p.qos)
	}
}

// Refuse reports a publish refused by a hook that runs after Inbox (Presence)
// exactly as Inbox reports its own refusals. It implements Refuser.
func (h *Inbox) Refuse(cl *mqtt.Client, pk packets.Packet, err error) (packets.Packet, error) {
	sess := h.sessions.of(cl)
	if sess == nil {
		return pk, packets.ErrRejectPacket
	}
	return h.pub.refuseLate(cl, sess, pk, err)
}

// MayReadGroup reports whether user may subscribe to the group's inbox.
func (h *Inbox) MayReadGroup(user, group string) bool { return h.members.has(group, user) }

// Deliver hands a stored entry to the inbox's live subscribers (after the
// commit that stored it).
func (h *Inbox) Deliver(e protocol.Entry) { h.fan.deliver(e, 1) }

// MembershipChanged applies a membership change made through this node, or
// told by another: the group's members are read again, and a removed
// member's subscriptions to the group (on every connection and stored
// session) end, so that it receives nothing more.
func (h *Inbox) MembershipChanged(group, removedUser string) {
	h.members.forget(group)
	if removedUser == "" {
		return
	}
	topic := protocol.GroupInbox(group)
	for _, cl := range h.mq.clients() {
		if string(cl.Properties.Username) == removedUser {
			h.fan.unsubscribe(cl, topic)
		}
	}
}

// invalidFilter replaces a subscription's filter that is out of bounds: "#"
// must be the last character of a filter [MQTT-4.7.1-2], so mochi refuses it
// (0x8F topic filter invalid) before any other check.
const invalidFilter = "#/"

// voidTopic is where refused wills go: no subscription can match it (a
// filter starting with a wildcard never matches a topic starting with $).
const voidTopic = "$parley/void"

// OnWill keeps last wills inside what the client may publish: mochi
// publishes a will straight to subscribers, without OnPublish, so a will on
// an inbox would skip stamping and storing. Wills on inboxes, on other
// users' presence and (for users) on plain topics are voided.
func (h *Inbox) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	user := string(cl.Properties.Username)
	if h.isAdmin(user) && !isInboxTopic(will.TopicName) {
		return will, nil
	}
	if t, ok := protocol.ParseTopic(will.TopicName); ok && t.Kind == protocol.KindPresence && t.ID == user {
		return will, nil
	}
	h.log.Debug("will voided", "client", cl.ID, "topic", will.TopicName)
	will.TopicName = voidTopic
	will.Retain = false
	return will, nil
}

// OnPacketRead works around a mochi quirk. Its inflight store holds the
// server's unacknowledged deliveries and the client's own QoS publishes by
// packet id alike, though the two directions number packets independently:
// a client publishing with the id of a delivery still awaiting its PUBACK
// makes mochi drop that delivery's record, and the client's PUBACK for it
// is then ignored (no cursor move, no receipt). The delivery is remembered
// here, before mochi drops it, and put back once the publish is handled
// (publisher.packetRead, restoreClobbered). Runs on the client's read
// goroutine.
//
// It also bounds what mochi would act on before any other hook sees it: the
// session expiry a DISCONNECT may set (MaxSessionExpiry: mochi applies it
// unchecked), and the topic aliases of over-long topics, which mochi stores
// before OnPublish refuses the publish. (The filter count of a SUBSCRIBE is
// bounded by mochi itself: MaxFilters.)
func (h *Inbox) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	switch pk.FixedHeader.Type {
	case packets.Disconnect:
		if max := uint32(h.cfg.MaxSessionExpiry / time.Second); pk.Properties.SessionExpiryIntervalFlag && pk.Properties.SessionExpiryInterval > max {
			pk.Properties.SessionExpiryInterval = max
		}
		return pk, nil
	case packets.Publish:
	default:
		return pk, nil
	}
	if _, ok := checkTopic(pk.TopicName, h.cfg.MaxTopicLen, h.cfg.MaxTopicLevels); !ok {
		// OnPublish refuses it (0x90); mochi must not keep it as an alias.
		pk.Properties.TopicAliasFlag, pk.Properties.TopicAlias = false, 0
	}
	if pk.FixedHeader.Qos == 0 {
		return pk, nil
	}
	if sess := h.sessions.of(cl); sess != nil {
		h.pub.packetRead(cl, sess, pk.PacketID)
	}
	return pk, nil
}

// UseSpread splits each user's publish rate (UserRate, UserBurst) between
// the nodes of a cluster that hold connections of the user, as s counts
// them. Call it before Start; without it (a single node) a node allows the
// whole rate.
func (h *Inbox) UseSpread(s UserSpread) { h.pub.useSpread(s) }

// Blocks answers whether one user blocked another (consent.Service).
type Blocks interface {
	// Blocked reports whether owner blocked other.
	Blocked(ctx context.Context, owner, other string) (bool, error)
}

// eitherBlocked reports whether a blocked b or b blocked a.
func eitherBlocked(ctx context.Context, bs Blocks, a, b string) (bool, error) {
	if ok, err := bs.Blocked(ctx, a, b); ok || err != nil {
		return ok, err
	}
	return bs.Blocked(ctx, b, a)
}

// UseBlocks refuses direct messages and typing notifications between users
// one of whom blocked the other. Call it before the broker serves.
func (h *Inbox) UseBlocks(b Blocks) { h.pub.blocks = b }

// UserShare returns how many nodes user's publish rate is split between on
// this node, as last counted: 0 if it never was (a single node, a user that
// has not published lately, or no answer yet), which means the whole rate.
func (h *Inbox) UserShare(user string) int { return h.pub.share(user) }

// MaxFilters is the most filters one SUBSCRIBE may carry: the broker
// refuses a larger one whole, before any hook sees it
// (Capabilities.MaximumSubscriptionFilters, third_party patch 12).
func (h *Inbox) MaxFilters() int { return h.cfg.MaxFilters }
