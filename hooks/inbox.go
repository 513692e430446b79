package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"

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
	// connections on this node together, so that more connections do not
	// buy more rate. Defaults twice Rate and twice Burst (100 and 200);
	// when Rate is negative and UserRate unset, off. A negative UserRate
	// disables the limit.
	//
	// A publish over a limit is refused with 0x97 in the PUBACK of an MQTT
	// 5 client at QoS 1. Other publishes (MQTT 3.1.1, QoS 0) have no code
	// to carry it and are never acknowledged unstored: the client's read
	// goroutine waits for the limit (at most maxRateWait, 2s), which slows
	// the client down through TCP, or the client is disconnected.
	UserRate  float64
	UserBurst int
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
// were away.
type Inbox struct {
	mqtt.HookBase
	cfg     InboxConfig
	log     *slog.Logger
	store   Store
	srv     *mqtt.Server
	metrics *Metrics
	isAdmin func(string) bool
	now     func() time.Time

	sessions  sync.Map // client id -> *session
	published sync.Map // *mqtt.Client -> published: stored by OnPublish, delivered by OnPublished
	groups    groupCache
	users     *userStates // per-user publish rate and error entry budget

	persistMu sync.Mutex                     // guards persisted
	persisted map[string]map[string]*session // user -> client id -> its persistent session

	// delivering serialises the deliveries of each shard of inboxes: deliver
	// holds a shard's lock from marking catching-up gates until the broker
	// has fanned the entry out, and records the entry as the shard's current
	// one, which AllowDelivery (called by that fan-out, on the same
	// goroutine) compares with what a catch-up has already sent. A catch-up
	// going live takes the lock too. So every entry reaches a catching-up
	// device exactly once: read by its catch-up or delivered live.
	delivering [64]deliveryShard
	regMu      sync.Mutex         // guards catching
	catching   map[string][]*gate // inbox -> gates of devices catching up on it

	receipts chan ackEvent

	delivered recentIDs // messages this node stored and delivered lately (retries are not delivered twice)

	bus      Bus         // the cluster's; nil on a single node
	gaps     *gapTracker // in a cluster: entries that did not reach this node (gaps.go)
	interest *interest   // the inbox filters this node's clients subscribe to, for the bus

	cursorMu sync.Mutex // guards dirty
	dirty    map[cursorKey]int64

	quit      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    atomic.Bool
}

// session is Parley's state for one MQTT client id. It outlives a
// connection when the session is persistent.
type session struct {
	id    string
	user  string
	admin bool

	// Owned by the client's read goroutine: set in OnPublish, used in
	// OnPublished, which mochi calls next on the same goroutine.
	pending    []protocol.Entry
	pendingQoS byte
	inboundAck bool            // OnQosComplete is about to report our PUBACK of the client's own publish
	clobbered  *packets.Packet // an outbound delivery mochi drops for the client's publish (OnPacketRead)
	strikes    strikes         // refusals for rate (RateStrikes); reset by each connection
	trackedAs  string          // the user whose persistent sessions count it (guarded by Inbox.persistMu)
	stopped    time.Time       // when its connection last ended (guarded by mu): mochi's StopTime has whole seconds
	since      time.Time       // when its connection began (guarded by mu)

	mu         sync.Mutex // guards the fields below
	cl         *mqtt.Client
	persistent bool                       // the session outlives the connection
	fresh      bool                       // clean start: cursors restart at the inbox's end
	limiter    *rate.Limiter              // publish rate into inboxes
	inflight   map[uint16]protocol.Header // deliveries awaiting PUBACK, by packet id
	cursors    map[string]*watermark      // inbox -> acknowledged seqs (persistent sessions)
	gates      map[string]*gate           // inbox -> catch-up in progress
	ackWait    chan struct{}              // closed and replaced on each acknowledgement
	nextID     uint16                     // last packet id used by catch-up (directPacketID)
}

type gate struct {
	sess  *session
	cl    *mqtt.Client
	inbox string
	qos   byte
	// guarded by Inbox.regMu
	dirty bool  // an entry was stored in inbox since catch-up last read it
	first int64 // the lowest seq stored in inbox since the gate opened
	live  atomic.Bool
	// sent is the last seq this catch-up wrote; resumeAfter where a
	// superseded catch-up on the same connection had got to.
	sent        atomic.Int64
	resumeAfter int64
	// start is where the catch-up began, fromEnd whether that was the
	// inbox's end (a device new to it) rather than its cursor. Written by
	// the catch-up before it goes live, read by AllowDelivery after.
	start   int64
	fromEnd bool
}

type cursorKey struct{ client, inbox string }

type ackEvent struct {
	to, by, inbox, id string // receipt goes to u/{to}: by acknowledged id, stored in inbox
	seq               int64
}

// NewInbox returns the Inbox hook. srv must have InlineClient enabled.
func NewInbox(cfg InboxConfig, store Store, srv *mqtt.Server, isAdmin func(string) bool, m *Metrics, log *slog.Logger) *Inbox {
	gs, _ := store.(GroupStore)
	cfg.setDefaults()
	if m == nil {
		m = NewMetrics(nil)
	}
	users := newUserStates(func() *userState {
		u := &userState{errors: rate.NewLimiter(rate.Limit(float64(cfg.ErrorEntries)/cfg.ErrorWindow.Seconds()), cfg.ErrorEntries)}
		if cfg.UserRate > 0 {
			u.rate = rate.NewLimiter(rate.Limit(cfg.UserRate), cfg.UserBurst)
		}
		return u
	})
	return &Inbox{
		cfg: cfg, log: log, store: store, srv: srv, metrics: m, isAdmin: isAdmin, now: time.Now,
		groups:    groupCache{store: gs, ttl: cfg.GroupCacheTTL, groups: map[string]*groupInfo{}},
		users:     users,
		persisted: map[string]map[string]*session{},
		catching:  map[string][]*gate{},
		receipts:  make(chan ackEvent, 1<<16),
		interest:  newInterest(),
		gaps:      newGapTracker(),
		dirty:     map[cursorKey]int64{},
		quit:      make(chan struct{}),
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

// Start runs the receipt, cursor and user-state workers until Close.
func (h *Inbox) Start() {
	h.wg.Add(3)
	go h.runReceipts()
	go h.runCursors()
	go h.runUsers()
	if h.bus != nil {
		h.wg.Add(1)
		go h.runGaps()
	}
}

// runUsers forgets, every few seconds, the per-user states that are as new
// (full buckets, nothing suppressed), so that memory follows the users who
// are active, not every user ever seen.
func (h *Inbox) runUsers() {
	defer h.wg.Done()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.users.prune(h.now())
		case <-h.quit:
			return
		}
	}
}

// Close stops the workers after a last cursor flush. Safe to call twice.
func (h *Inbox) Close() {
	h.closeOnce.Do(func() {
		h.closed.Store(true)
		close(h.quit)
		h.wg.Wait()
	})
}

func (h *Inbox) session(cl *mqtt.Client) *session {
	if v, ok := h.sessions.Load(cl.ID); ok {
		return v.(*session)
	}
	return nil
}

// OnSessionEstablish prepares Parley's session before mochi inherits an
// existing one: inbox deliveries the old connection left unacknowledged are
// dropped from mochi's inflight store (catch-up resends them from the store,
// in order), and the inherited inbox subscriptions start in catch-up.
func (h *Inbox) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	user := string(cl.Properties.Username)
	persistent := !pk.Connect.Clean
	if cl.Properties.ProtocolVersion == 5 {
		persistent = cl.Properties.Props.SessionExpiryInterval > 0
	}
	var sess *session
	if old := h.session(cl); old != nil && !pk.Connect.Clean {
		sess = old
	} else {
		sess = &session{id: cl.ID, user: user, cursors: map[string]*watermark{}, gates: map[string]*gate{}}
		sess.fresh = pk.Connect.Clean
		h.sessions.Store(cl.ID, sess)
	}
	now := h.now()
	sess.mu.Lock()
	sess.cl = cl
	sess.since = now
	sess.user = user
	sess.admin = h.isAdmin(user)
	sess.persistent = persistent && !sess.admin
	sess.inflight = map[uint16]protocol.Header{}
	sess.ackWait = make(chan struct{})
	if h.cfg.Rate > 0 {
		sess.limiter = rate.NewLimiter(rate.Limit(h.cfg.Rate), h.cfg.Burst)
	}
	sess.strikes = strikes{}
	// A publish of the previous connection whose PUBACK could not be
	// written left these set (no OnQosComplete followed).
	sess.inboundAck, sess.clobbered = false, nil
	persistentNow := sess.persistent
	sess.mu.Unlock()
	if h.bus != nil {
		h.bus.ClaimSession(cl.ID, now)
	}
	if persistentNow {
		if victim := h.trackSession(sess); victim != "" {
			h.evictSession(victim, user)
		}
	} else {
		h.untrackSession(sess)
	}

	existing, ok := h.srv.Clients.Get(cl.ID)
	if !ok || pk.Connect.Clean || existing == cl {
		return
	}
	dropInboxInflights(existing)
	for filter, sub := range existing.State.Subscriptions.GetAll() {
		if isInboxTopic(filter) && sess.persistent {
			h.openGate(sess, cl, filter, sub.Qos)
		}
	}
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
	sess := h.session(cl)
	if sess == nil {
		return
	}
	sess.mu.Lock()
	var gs []*gate
	for _, g := range sess.gates {
		if g.cl == cl {
			gs = append(gs, g)
		}
	}
	sess.mu.Unlock()
	for _, g := range gs {
		h.startCatchup(g)
	}
}

func isInboxTopic(topic string) bool {
	return strings.HasPrefix(topic, protocol.UserPrefix) || strings.HasPrefix(topic, protocol.GroupPrefix)
}

// dropInboxInflights removes unacknowledged inbox deliveries from a client's
// mochi inflight store.
func dropInboxInflights(cl *mqtt.Client) {
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type == packets.Publish && isInboxTopic(pk.TopicName) {
			cl.State.Inflight.Delete(pk.PacketID)
		}
	}
}

// OnDisconnect ends the connection's deliveries: unacknowledged inbox
// deliveries are dropped (catch-up resends them), cursors are flushed soon.
func (h *Inbox) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	h.published.Delete(cl) // a publish whose OnPublished never came (QoS 2 whose PUBREC failed)
	sess := h.session(cl)
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
		dropInboxInflights(cl)
	}
	if expire && !cl.IsTakenOver() {
		if h.sessions.CompareAndDelete(cl.ID, sess) {
			h.releaseSession(cl.ID)
		}
		h.untrackSession(sess)
	}
}

// OnClientExpired forgets an expired persistent session.
func (h *Inbox) OnClientExpired(cl *mqtt.Client) {
	if sess := h.session(cl); sess != nil {
		sess.mu.Lock()
		mine := sess.cl == cl
		sess.mu.Unlock()
		if mine {
			if h.sessions.CompareAndDelete(cl.ID, sess) {
				h.releaseSession(cl.ID)
			}
			h.untrackSession(sess)
			h.interest.removeClient(cl.ID)
		}
	}
}

// OnSubscribe puts each inbox subscription of a persistent session into
// catch-up before mochi adds it, so that no live delivery overtakes the
// stored backlog. A repeated subscription is removed first, so that the
// Auth hook sees a new subscription and authorises it.
//
// It also refuses filters beyond MaxTopicLen or MaxTopicLevels before mochi
// adds them to its topic index (whose lock a filter of thousands of levels
// would hold for seconds): they are replaced by an invalid filter, which
// mochi refuses with 0x8F (MQTT 3.1.1: 0x80). Runs on the client's read
// goroutine; no I/O.
func (h *Inbox) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if !cl.Net.Inline {
		for i, sub := range pk.Filters {
			if _, ok := checkTopic(sub.Filter, h.cfg.MaxTopicLen, h.cfg.MaxTopicLevels); !ok {
				pk.Filters[i].Filter = invalidFilter
			}
		}
	}
	sess := h.session(cl)
	if sess == nil {
		return pk
	}
	for _, sub := range pk.Filters {
		if !isInboxTopic(sub.Filter) {
			continue
		}
		if _, ok := cl.State.Subscriptions.Get(sub.Filter); ok {
			h.srv.Topics.Unsubscribe(sub.Filter, cl.ID)
			cl.State.Subscriptions.Delete(sub.Filter)
		}
		if sess.persistent && !strings.ContainsAny(sub.Filter, "+#") {
			h.openGate(sess, cl, sub.Filter, sub.Qos)
		}
	}
	return pk
}

// OnSubscribed starts the catch-ups of granted subscriptions and drops the
// gates of refused ones.
func (h *Inbox) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	sess := h.session(cl)
	if sess == nil {
		return
	}
	if subscribedClient(cl) {
		// The node's interest in the inboxes reaches the bus before the
		// SUBACK (mochi sends it after this hook) and before any catch-up
		// reads the store: what another node stores from then on is
		// announced to this one.
		watched := false
		for i, sub := range pk.Filters {
			if i < len(codes) && codes[i] < 0x80 && h.interest.add(cl.ID, sub.Filter) {
				watched = true
			}
		}
		if watched {
			h.barrier()
		}
	}
	for i, sub := range pk.Filters {
		sess.mu.Lock()
		g := sess.gates[sub.Filter]
		sess.mu.Unlock()
		if g == nil || g.cl != cl || g.live.Load() {
			continue
		}
		if i < len(codes) && codes[i] < 0x80 {
			h.startCatchup(g)
		} else {
			h.closeGate(g)
		}
	}
}

// OnUnsubscribed stops catch-ups of removed subscriptions. mochi also
// reports here the subscriptions it moves off a connection whose session is
// taken over; those belong to the new connection now and are left alone.
func (h *Inbox) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if subscribedClient(cl) && !cl.IsTakenOver() {
		for _, sub := range pk.Filters {
			h.interest.remove(cl.ID, sub.Filter)
		}
	}
	sess := h.session(cl)
	if sess == nil {
		return
	}
	for _, sub := range pk.Filters {
		sess.mu.Lock()
		g := sess.gates[sub.Filter]
		sess.mu.Unlock()
		if g != nil && g.cl == cl {
			h.closeGate(g)
		}
	}
}

// AllowDelivery implements DeliveryGate. It runs on the publisher's goroutine
// for every subscriber of a topic: it refuses deliveries to connections that
// are gone (persistent sessions catch up from the store instead of piling up
// in mochi's inflight store), to subscriptions still catching up, and
// disconnects subscribers whose unacknowledged deliveries overflow.
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
	// Unacknowledged deliveries, counted once for both windows below, and
	// the seq of the entry deliver is fanning out (0 for typing, which is
	// never stored; -1 when this check is not part of deliver's fan-out).
	inflight := cl.State.Inflight.Len()
	seq := int64(-1)
	if cur := h.deliveryShard(topic).current.Load(); cur != nil && cur.inbox == topic {
		seq = cur.seq
	}
	sess := h.session(cl)
	if sess != nil {
		if strings.HasPrefix(topic, protocol.GroupPrefix) && !sess.admin && !h.isMember(topic[len(protocol.GroupPrefix):], sess.user) {
			return false // removed, or a subscription from before a change made on another node
		}
		sess.mu.Lock()
		g := sess.gates[topic]
		sess.mu.Unlock()
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
			// the start was read, it reaches deliver only now, and is the
			// device's.
			if seq > 0 && seq <= g.sent.Load() && (!g.fromEnd || seq > g.start) {
				return false
			}
		}
		if h.overReceiveMaximum(sess, cl, topic, seq, inflight) {
			return false
		}
	}
	if inflight >= h.cfg.MaxInflight {
		h.slowConsumer(cl, "inflight window full")
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
// deliver, under the inbox's delivery lock; seq is the entry's.
func (h *Inbox) overReceiveMaximum(sess *session, cl *mqtt.Client, topic string, seq int64, inflight int) bool {
	rm := int(cl.Properties.Props.ReceiveMaximum)
	if seq <= 0 || cl.Properties.ProtocolVersion != 5 || rm == 0 || sess.admin || inflight < rm {
		return false // typing (seq 0, QoS 0) is not counted by the window
	}
	sub, ok := cl.State.Subscriptions.Get(topic)
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
	g := h.openGate(sess, cl, topic, sub.Qos)
	g.resumeAfter = max(g.resumeAfter, seq-1)
	h.metrics.Deferred.Inc()
	h.startCatchup(g)
	return true
}

// OnPublishDropped disconnects a subscriber whose outbound queue overflowed:
// mochi dropped an entry for it, and catch-up on its return is the only way
// it gets it.
func (h *Inbox) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	if isInboxTopic(pk.TopicName) {
		h.slowConsumer(cl, "outbound queue full")
	}
}

func (h *Inbox) slowConsumer(cl *mqtt.Client, why string) {
	if cl.Closed() {
		return
	}
	h.metrics.SlowConsumers.Inc()
	h.log.Warn("disconnecting slow consumer", "client", cl.ID, "reason", why)
	cl.Stop(packets.ErrQuotaExceeded)
}

// OnQosPublish remembers which entry each outbound packet id carries, so
// that its PUBACK can move the device's cursor and produce a receipt.
func (h *Inbox) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type != packets.Publish || !isInboxTopic(pk.TopicName) {
		return
	}
	hd, ok := protocol.PeekHeader(pk.Payload)
	if !ok || hd.Seq == 0 {
		return
	}
	if sess := h.session(cl); sess != nil {
		sess.mu.Lock()
		if sess.cl == cl {
			sess.inflight[pk.PacketID] = hd
		}
		sess.mu.Unlock()
	}
}

// OnQosDropped forgets a delivery mochi gave up on.
func (h *Inbox) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if sess := h.session(cl); sess != nil {
		sess.mu.Lock()
		delete(sess.inflight, pk.PacketID)
		sess.mu.Unlock()
	}
}

// OnQosComplete handles a subscriber's PUBACK: the device's cursor moves, and
// the first acknowledgement of a message by its recipient queues a delivered
// receipt for the sender. Runs on the subscriber's goroutine; never blocks.
func (h *Inbox) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	sess := h.session(cl)
	if sess == nil {
		return
	}
	if sess.inboundAck {
		// mochi reports its own PUBACK of the client's publish here too.
		sess.inboundAck = false
		h.restoreClobbered(cl, sess)
		return
	}
	sess.mu.Lock()
	hd, ok := sess.inflight[pk.PacketID]
	if ok {
		delete(sess.inflight, pk.PacketID)
		close(sess.ackWait)
		sess.ackWait = make(chan struct{})
	}
	var moved bool
	var at int64
	if ok && sess.persistent {
		if wm := sess.cursors[hd.Inbox]; wm != nil && wm.ack(hd.Seq) {
			moved, at = true, wm.w
		}
	}
	sess.mu.Unlock()
	if !ok {
		return
	}
	h.metrics.Acked.Inc()
	if moved {
		h.cursorMu.Lock()
		h.dirty[cursorKey{sess.id, hd.Inbox}] = at
		h.cursorMu.Unlock()
	}
	if hd.Type == protocol.TypeMsg && hd.From != sess.user && h.cfg.OnDelivered != nil {
		h.cfg.OnDelivered(sess.user, hd.Inbox, hd.ID)
	}
	if hd.Type == protocol.TypeMsg && hd.From != sess.user &&
		(hd.Inbox == protocol.UserInbox(sess.user) || strings.HasPrefix(hd.Inbox, protocol.GroupPrefix)) {
		select {
		case h.receipts <- ackEvent{to: hd.From, by: sess.user, inbox: hd.Inbox, id: hd.ID, seq: hd.Seq}:
		default:
			h.metrics.ReceiptsLost.Inc()
		}
	}
}

// OnPublish stamps, checks and stores what a client publishes into an inbox,
// before mochi sends the PUBACK: the commit is the one wait on this
// goroutine, and it is what makes the PUBACK mean "stored". The stored
// entries are delivered in OnPublished, after the PUBACK.
func (h *Inbox) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	sess := h.session(cl)
	out, err := h.onPublish(cl, sess, pk)
	h.stash(cl, sess)
	if sess != nil && sess.inboundAck {
		// A delivery may have taken the publish's packet id while it was
		// being stored; mochi is about to overwrite it with its PUBACK.
		h.saveClobbered(cl, sess, pk.PacketID)
	}
	return out, err
}

// stash keeps what the publish being handled stored for the connection's
// OnPublished: it is this connection's, whatever happens to the session
// meanwhile (taken over here or on another node while the commit was
// awaited: it may be gone or replaced by the time OnPublished runs).
func (h *Inbox) stash(cl *mqtt.Client, sess *session) {
	if sess == nil || len(sess.pending) == 0 {
		return
	}
	p := published{qos: sess.pendingQoS}
	if v, ok := h.published.Load(cl); ok {
		p.entries = v.(published).entries
	}
	p.entries = append(p.entries, sess.pending...)
	h.published.Store(cl, p)
	sess.pending = sess.pending[:0]
}

// published is what a connection's OnPublish stored, for its OnPublished.
type published struct {
	entries []protocol.Entry
	qos     byte
}

func (h *Inbox) onPublish(cl *mqtt.Client, sess *session, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	if sess == nil {
		return pk, packets.ErrRejectPacket
	}
	sess.pending = sess.pending[:0]
	sess.inboundAck = pk.FixedHeader.Qos == 1
	if !sess.admin {
		// Every publish counts against the rate limits, refused ones too.
		if out, err, done := h.throttle(cl, sess, pk); done {
			return out, err
		}
	}
	if detail, ok := checkTopic(pk.TopicName, h.cfg.MaxTopicLen, h.cfg.MaxTopicLevels); !ok {
		return h.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNoInbox, Detail: detail})
	}
	t, ok := protocol.ParseTopic(pk.TopicName)
	if !ok {
		return h.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNoInbox, Detail: "no such inbox"})
	}
	switch t.Kind {
	case protocol.KindOther:
		if sess.admin {
			return pk, nil // plain MQTT for administrators
		}
		return h.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNotAuthorized, Detail: "topics outside u/, g/ and p/ are for administrators"})
	case protocol.KindUser, protocol.KindGroup:
		return h.publishDM(cl, sess, pk, t)
	case protocol.KindPresence:
		if sess.admin || t.ID == sess.user {
			return pk, nil
		}
		return h.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNotAuthorized, Detail: "presence of another user"})
	}
	return h.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNoInbox, Detail: "no such inbox"})
}

func (h *Inbox) publishDM(cl *mqtt.Client, sess *session, pk packets.Packet, t protocol.Topic) (packets.Packet, error) {
	start := h.now()
	if len(pk.Payload) > h.cfg.MaxPayload {
		return h.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeTooLarge})
	}
	if t.Kind == protocol.KindGroup && !h.isMember(t.ID, sess.user) {
		return h.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNotAuthorized, Detail: "not a member of group " + t.ID})
	}
	sub, err := protocol.ParseSubmission(pk.Payload)
	if err != nil {
		return h.refuse(cl, sess, pk, err)
	}
	switch sub.Type {
	case protocol.TypeTyping:
		sess.pending = append(sess.pending, protocol.Entry{Inbox: t.String(), From: sess.user, To: t.ID,
			TS: start.UnixMilli(), Type: protocol.TypeTyping})
		sess.pendingQoS = 0
		h.metrics.Live.WithLabelValues(protocol.TypeTyping).Inc()
		return pk, packets.CodeSuccessIgnore
	case protocol.TypeRead:
		return h.publishRead(cl, sess, pk, t, sub)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return h.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeUnavailable, Detail: err.Error()})
	}
	m := storage.Message{ID: id.String(), From: sess.user, To: t.ID, TS: start.UnixMilli(), Type: protocol.TypeMsg,
		Cid: sub.Cid, Data: sub.Body, Inboxes: []string{t.String()}}
	if t.Kind == protocol.KindUser && t.ID != sess.user && !sess.admin {
		m.Inboxes = append(m.Inboxes, protocol.UserInbox(sess.user)) // the sender's copy
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	es, dup, err := h.store.Append(ctx, m)
	cancel()
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return h.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNoInbox, Detail: "no user " + t.ID})
	case errors.Is(err, storage.ErrInvalid):
		// The store cannot hold this message (the checks above should have
		// caught it): the sender's own bad input, failed alone.
		h.log.Warn("store refused message", "client", cl.ID, "error", err)
		return h.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeBadPayload, Detail: "the message cannot be stored"})
	case err != nil:
		h.log.Warn("store message", "client", cl.ID, "error", err)
		return h.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeUnavailable})
	}
	h.metrics.StoreLatency.Observe(time.Since(start).Seconds())
	switch {
	case !dup:
		h.metrics.Stored.WithLabelValues(protocol.TypeMsg).Inc()
		h.delivered.add(es[0].ID)
		sess.pending = append(sess.pending, es...)
		sess.pendingQoS = 1
	case !h.delivered.has(es[0].ID):
		// A retry of a message this node did not deliver: the node that
		// stored it may have died between its commit and its delivery
		// (the sender got no PUBACK, and retried here). Delivered now, it
		// reaches the recipient in order, before the sender's next
		// message; a device that had it gets a repeat, dropped by seq.
		h.metrics.Redelivered.Inc()
		h.delivered.add(es[0].ID)
		sess.pending = append(sess.pending, es...)
		sess.pendingQoS = 1
	}
	// A retry of a message this node delivered is acknowledged and not
	// delivered again.
	return pk, packets.CodeSuccessIgnore
}

// throttle takes a publish's token from the connection's and the user's
// rate limits. done is false when the publish may go on, possibly after
// waiting here, on the client's read goroutine, for up to maxRateWait: a
// client without PUBACK codes (MQTT 3.1.1, QoS 0) is slowed down rather
// than refused, since a refusal it cannot read would be acknowledged
// unstored. An MQTT 5 client at QoS 1 does not wait: it gets 0x97.
func (h *Inbox) throttle(cl *mqtt.Client, sess *session, pk packets.Packet) (out packets.Packet, err error, done bool) {
	sess.mu.Lock()
	lim := sess.limiter
	sess.mu.Unlock()
	var userLim *rate.Limiter
	if h.cfg.UserRate > 0 {
		userLim = h.users.get(sess.user).rate
	}
	if lim == nil && userLim == nil {
		return pk, nil, false
	}
	maxWait := maxRateWait
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		maxWait = 0
	}
	wait, ok := reserve(h.now(), maxWait, lim, userLim)
	if !ok {
		out, err = h.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeRateLimited})
		return out, err, true
	}
	if wait > 0 {
		h.metrics.RateWaits.Inc()
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-h.quit:
		}
	}
	return pk, nil, false
}

// refuse reports a refused publish. MQTT 5 clients publishing at QoS 1 or 2
// get the reason code in their PUBACK; one refused for rate more than
// RateStrikes times within StrikeWindow is disconnected instead (0x96).
//
// Others (MQTT 3.1.1, and QoS 0, which has no PUBACK) are never
// acknowledged for a publish refused for a passing reason (the store is
// unavailable, the rate is exceeded): they are disconnected without PUBACK,
// so that the client publishes again after reconnecting. For lasting
// reasons they get a PUBACK and an error entry in their own inbox, at most
// ErrorEntries per user and ErrorWindow (storeError).
func (h *Inbox) refuse(cl *mqtt.Client, sess *session, pk packets.Packet, err error) (packets.Packet, error) {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		pe = &protocol.Error{Code: protocol.CodeUnavailable, Detail: err.Error()}
	}
	h.metrics.Refused.WithLabelValues(codeLabel(pe.Code)).Inc()
	reason := pe.Error()
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		sess.inboundAck = false
		h.restoreClobbered(cl, sess)
		if pe.Code == protocol.CodeRateLimited && sess.strikes.add(h.now(), h.cfg.RateStrikes, h.cfg.StrikeWindow) {
			h.disconnectForRate(cl)
			return pk, packets.ErrRejectPacket
		}
		return pk, packets.Code{Code: byte(pe.Code), Reason: reason}
	}
	switch pe.Code {
	case protocol.CodeUnavailable:
		sess.inboundAck = false
		h.restoreClobbered(cl, sess)
		cl.Stop(packets.ErrServerUnavailable)
		return pk, packets.ErrRejectPacket
	case protocol.CodeRateLimited:
		sess.inboundAck = false
		h.restoreClobbered(cl, sess)
		h.disconnectForRate(cl)
		return pk, packets.ErrRejectPacket
	}
	if !sess.admin {
		e, stored, serr := h.storeError(sess.user, pe.Code, reason, pk.TopicName, cidOf(pk.Payload))
		switch {
		case serr != nil:
			h.log.Warn("store error entry", "client", cl.ID, "error", serr)
		case stored:
			sess.pending = append(sess.pending, e)
			sess.pendingQoS = 1
		}
	}
	return pk, packets.CodeSuccessIgnore
}

// disconnectForRate ends a connection that publishes beyond its rate limits:
// an MQTT 5 client gets DISCONNECT 0x96 (message rate too high); an MQTT
// 3.1.1 client, which has no server DISCONNECT, is closed.
func (h *Inbox) disconnectForRate(cl *mqtt.Client) {
	h.metrics.RateDisconnects.Inc()
	h.log.Info("disconnecting a client over its rate limits", "client", cl.ID)
	if cl.Properties.ProtocolVersion == 5 {
		_ = h.srv.DisconnectClient(cl, packets.ErrMessageRateTooHigh)
		return
	}
	cl.Stop(packets.ErrMessageRateTooHigh)
}

// Refuse reports a publish refused by a hook that runs after Inbox (Presence)
// exactly as Inbox reports its own refusals. It implements Refuser.
func (h *Inbox) Refuse(cl *mqtt.Client, pk packets.Packet, err error) (packets.Packet, error) {
	sess := h.session(cl)
	if sess == nil {
		return pk, packets.ErrRejectPacket
	}
	out, rerr := h.refuse(cl, sess, pk, err)
	h.stash(cl, sess) // an error entry, for OnPublished
	return out, rerr
}

func codeLabel(c protocol.Code) string {
	const hex = "0123456789abcdef"
	return "0x" + string([]byte{hex[c>>4], hex[c&0xf]})
}

// cidOf returns the cid of a payload, if it has one, for error entries.
func cidOf(p []byte) string {
	if !bytes.Contains(p, []byte(`"cid"`)) {
		return ""
	}
	var v struct {
		Cid string `json:"cid"`
	}
	if json.Unmarshal(p, &v) != nil || !protocol.ValidCid(v.Cid) {
		return ""
	}
	return v.Cid
}

// storeError stores an error entry in user's inbox, if the user's budget
// (ErrorEntries per ErrorWindow) allows one; stored is false when it does
// not, and the refusal is counted in the next entry stored. The entry
// echoes the topic cut short and never the payload (protocol.ErrorData).
func (h *Inbox) storeError(user string, code protocol.Code, reason, topic, cid string) (e protocol.Entry, stored bool, err error) {
	suppressed, ok := h.users.get(user).takeError(h.now())
	if !ok {
		h.metrics.ErrorsSuppressed.Inc()
		return protocol.Entry{}, false, nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return protocol.Entry{}, false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()
	es, _, err := h.store.Append(ctx, storage.Message{ID: id.String(), From: user, To: user, TS: h.now().UnixMilli(),
		Type: protocol.TypeError, Cid: cid, Data: protocol.ErrorDataSuppressed(code, reason, topic, suppressed),
		Inboxes: []string{protocol.UserInbox(user)}})
	if err != nil {
		return protocol.Entry{}, false, err
	}
	h.metrics.Stored.WithLabelValues(protocol.TypeError).Inc()
	return es[0], true, nil
}

// OnPublished delivers what OnPublish stored, after mochi sent the PUBACK.
func (h *Inbox) OnPublished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	v, ok := h.published.LoadAndDelete(cl)
	if !ok {
		return
	}
	p := v.(published)
	for _, e := range p.entries {
		h.deliver(e, p.qos)
	}
}

// deliver hands a stored entry to its inbox's live subscribers: on this
// node (fanout), and on the others through the bus.
func (h *Inbox) deliver(e protocol.Entry, qos byte) {
	payload := e.AppendJSON(nil)
	if h.bus != nil {
		h.bus.Announce(e.Inbox, e.Seq, payload)
	}
	h.fanout(e.Inbox, e.Seq, payload, qos)
}

// fanout hands an entry, stored here or by another node, to the broker for
// its inbox's subscribers on this node. Devices catching up on the inbox are
// told first, so that they read it from the store before going live.
func (h *Inbox) fanout(inbox string, seq int64, payload []byte, qos byte) {
	sh := h.deliveryShard(inbox)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.current.Store(&current{inbox: inbox, seq: seq})
	defer sh.current.Store(nil)
	if seq > 0 {
		h.regMu.Lock()
		for _, g := range h.catching[inbox] {
			g.dirty = true
			if g.first == 0 || seq < g.first {
				g.first = seq
			}
		}
		h.regMu.Unlock()
	}
	if err := h.srv.Publish(inbox, payload, false, qos); err != nil {
		h.log.Warn("deliver", "inbox", inbox, "seq", seq, "error", err)
	}
	if h.bus != nil {
		h.gaps.seen(inbox, seq, h.now())
	}
}

var lockSeed = maphash.MakeSeed()

type deliveryShard struct {
	mu      sync.Mutex
	current atomic.Pointer[current] // the entry being fanned out, if any
}

type current struct {
	inbox string
	seq   int64
}

func (h *Inbox) deliveryShard(inbox string) *deliveryShard {
	return &h.delivering[maphash.String(lockSeed, inbox)%uint64(len(h.delivering))]
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
// (restoreClobbered). Runs on the client's read goroutine.
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
	if sess := h.session(cl); sess != nil {
		sess.clobbered = nil
		h.saveClobbered(cl, sess, pk.PacketID)
	}
	return pk, nil
}

// MaxFilters is the most filters one SUBSCRIBE may carry: the broker
// refuses a larger one whole, before any hook sees it
// (Capabilities.MaximumSubscriptionFilters, third_party patch 12).
func (h *Inbox) MaxFilters() int { return h.cfg.MaxFilters }

// saveClobbered remembers the delivery that holds packet id pid, if any.
func (h *Inbox) saveClobbered(cl *mqtt.Client, sess *session, pid uint16) {
	if out, ok := cl.State.Inflight.Get(pid); ok && out.FixedHeader.Type == packets.Publish {
		sess.clobbered = &out
	}
}

// restoreClobbered puts back the delivery OnPacketRead saved, if any.
func (h *Inbox) restoreClobbered(cl *mqtt.Client, sess *session) {
	out := sess.clobbered
	if out == nil {
		return
	}
	sess.clobbered = nil
	if _, taken := cl.State.Inflight.Get(out.PacketID); taken {
		return
	}
	if cl.State.Inflight.Set(*out) {
		atomic.AddInt64(&h.srv.Info.Inflight, 1)
	}
}
