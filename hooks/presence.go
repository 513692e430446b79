package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// PresenceStore is what the Presence hook needs from storage: last-seen
// times, privacy settings, and users' contact lists.
type PresenceStore interface {
	SetLastSeen(ctx context.Context, seen map[string]time.Time) error
	LastSeen(ctx context.Context, users []string) (map[string]time.Time, error)
	SetPresencePrivacy(ctx context.Context, user, privacy string) error
	PresencePrivacy(ctx context.Context, user string) (string, error)
	// IsContact reports whether contact is in user's own contact list.
	IsContact(ctx context.Context, user, contact string) (bool, error)
}

// PresenceDirectory shares presence between the nodes of a cluster: each
// node records its view of a user (its devices' status, offline when it
// has none) and reads the user's state in the whole cluster.
type PresenceDirectory interface {
	SetPresence(ctx context.Context, user, status string, since time.Time) (protocol.Presence, error)
	GetPresence(ctx context.Context, users []string) (map[string]protocol.Presence, error)
}

// Refuser reports a refused publish to its client. Inbox implements it, so
// that Presence refuses the way every other publish is refused: a reason
// code in an MQTT 5 PUBACK, an error entry in the user's inbox otherwise.
type Refuser interface {
	Refuse(cl *mqtt.Client, pk packets.Packet, err error) (packets.Packet, error)
}

// PresenceConfig configures the Presence hook.
type PresenceConfig struct {
	// Flush is how often last-seen times are written to the store, in one
	// write. Default 1s.
	Flush time.Duration
	// Refresh is how often the last-seen times of connected users are
	// renewed: after a crash a user's last_seen is at most this old.
	// Default 1m.
	Refresh time.Duration
	// StoreTimeout bounds each store call. Default 5s.
	StoreTimeout time.Duration
	// Rate is each device's sustained rate of status updates per second;
	// Burst its burst. Defaults 1 and 5. A negative Rate disables the limit.
	Rate  float64
	Burst int
	// RefusalRate is how many refused subscriptions to other users'
	// presence per second a user may cost the store (each is a privacy
	// check), across the user's connections; RefusalBurst its burst.
	// Defaults 10 and 50. Once a user has spent it, subscriptions of the
	// user to others' presence are refused (0x87; MQTT 3.1.1: 0x80)
	// without a check until it refills. Allowed subscriptions cost nothing
	// of it, so a client subscribing to all its contacts is not held back.
	// A negative RefusalRate disables the limit.
	RefusalRate  float64
	RefusalBurst int
}

func (c *PresenceConfig) setDefaults() {
	if c.Flush <= 0 {
		c.Flush = time.Second
	}
	if c.Refresh <= 0 {
		c.Refresh = time.Minute
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = 5 * time.Second
	}
	if c.Rate == 0 {
		c.Rate = 1
	}
	if c.Burst <= 0 {
		c.Burst = 5
	}
	if c.RefusalRate == 0 {
		c.RefusalRate = 10
	}
	if c.RefusalBurst <= 0 {
		c.RefusalBurst = 50
	}
}

// Presence is the hook that keeps p/{user}: it counts each user's connected
// devices and publishes the user's state, retained, when it changes — online
// when the first device connects, away when every device says so, offline
// with last_seen when the last one goes (DISCONNECT, keep-alive timeout,
// network loss, its will). It records last-seen times in the store, decides
// who may see whom (privacy), and answers the HTTP API's presence questions.
//
// Every state is published by the server through the inline client, holding
// the user's shard lock, so that the retained state of a user is always the
// latest one. Client wills on p/{own} are therefore voided rather than
// delivered: the server publishes offline itself when, and only when, the
// user's last device has gone, which also suppresses a will fired while
// another device is connected. (A v5 will delay is not honoured.)
//
// The state is in memory: after a restart, or a crash, nobody is online and
// nothing is retained. A subscriber to p/{user} that finds no retained state
// is given one built from the store (offline, last_seen).
//
// Administrators' connections do not count, and their publishes and wills on
// p/ are passed through as plain MQTT.
type Presence struct {
	mqtt.HookBase
	cfg     PresenceConfig
	log     *slog.Logger
	store   PresenceStore
	mq      broker
	refuser Refuser
	dir     PresenceDirectory // the cluster's; nil on a single node
	blocks  Blocks            // nil: nobody blocks anybody
	isAdmin func(string) bool
	now     func() time.Time

	online      prometheus.Gauge
	flushErrors prometheus.Counter

	shards [32]presenceShard

	seenMu   sync.Mutex           // guards the fields below
	seen     map[string]time.Time // last-seen times to write
	flushing map[string]time.Time // last-seen times being written

	refusalMu sync.Mutex               // guards refusals
	refusals  map[string]*rate.Limiter // viewer -> its budget of refused privacy checks (RefusalRate)

	quit      chan struct{}
	wg        sync.WaitGroup
	retrying  sync.Map // "get/" or "set/" + user -> struct{}: a retry under way (retry)
	closeOnce sync.Once
}

// presenceShard holds the users whose ids hash to it.
type presenceShard struct {
	// mu guards the fields below, and is held while a change of one of its
	// users is published: the retained states of a user follow each other
	// in the order of the changes.
	mu      sync.Mutex
	users   map[string]*userPresence // users with a device, or not offline
	pending map[*device]string       // devices not yet established (OnSessionEstablished) -> their user
}

type userPresence struct {
	devices map[string]*device // client id -> its current connection
	status  string             // what p/{user} says: online, away or offline
	since   time.Time          // when status began
}

// device is one connection of a user. A client id has at most one: a new
// connection with the same id takes the session over and replaces it.
type device struct {
	cl      *mqtt.Client
	live    bool // counts for presence: established, or took over a device that was
	away    bool
	limiter *rate.Limiter
}

// NewPresence returns the Presence hook. srv must have InlineClient enabled;
// refuser reports refused status updates; reg (optional) receives its
// metrics.
func NewPresence(cfg PresenceConfig, store PresenceStore, srv *mqtt.Server, refuser Refuser, isAdmin func(string) bool,
	reg prometheus.Registerer, log *slog.Logger) *Presence {
	cfg.setDefaults()
	h := &Presence{
		cfg: cfg, log: log, store: store, mq: broker{srv}, refuser: refuser, isAdmin: isAdmin, now: time.Now,
		online: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_presence_online_users",
			Help: "Users with at least one connected device."}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_presence_flush_errors_total",
			Help: "Failed writes of last-seen times (retried)."}),
		seen:     map[string]time.Time{},
		refusals: map[string]*rate.Limiter{},
		quit:     make(chan struct{}),
	}
	for i := range h.shards {
		h.shards[i].users = map[string]*userPresence{}
		h.shards[i].pending = map[*device]string{}
	}
	if reg != nil {
		reg.MustRegister(h.online, h.flushErrors)
	}
	return h
}

// ID implements mqtt.Hook.
func (h *Presence) ID() string { return "parley-presence" }

// Provides implements mqtt.Hook.
func (h *Presence) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnWill, mqtt.OnPublish,
		mqtt.OnSubscribed, mqtt.OnRetainPublished:
		return true
	}
	return false
}

// Start runs the worker that writes last-seen times, until Close.
func (h *Presence) Start() {
	h.wg.Add(1)
	go h.run()
}

// Close stops the worker and writes the last-seen times still pending. Call
// it after the broker has disconnected its clients. Safe to call twice.
func (h *Presence) Close() {
	h.closeOnce.Do(func() {
		close(h.quit)
		h.wg.Wait()
		h.flush()
	})
}

var presenceSeed = maphash.MakeSeed()

func (h *Presence) shard(user string) *presenceShard {
	return &h.shards[maphash.String(presenceSeed, user)%uint64(len(h.shards))]
}

// counted returns the user of a connection that counts for presence.
func (h *Presence) counted(cl *mqtt.Client) (string, bool) {
	user := string(cl.Properties.Username)
	return user, !cl.Net.Inline && user != "" && !h.isAdmin(user)
}

// OnSessionEstablish records a connection before mochi takes over an
// existing session with the same client id, so that the old connection's
// departure (and its will) is known to be a takeover: the device stays as
// it was, with no offline in between.
func (h *Presence) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	user, ok := h.counted(cl)
	if !ok {
		return
	}
	sh := h.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u := sh.users[user]
	if u == nil {
		u = &userPresence{devices: map[string]*device{}, status: protocol.StatusOffline}
		sh.users[user] = u
	}
	d := &device{cl: cl}
	if h.cfg.Rate > 0 {
		d.limiter = rate.NewLimiter(rate.Limit(h.cfg.Rate), h.cfg.Burst)
	}
	if old := u.devices[cl.ID]; old != nil {
		d.live = old.live
		delete(sh.pending, old)
	}
	u.devices[cl.ID] = d
	// mochi calls no hook when a connection fails between here and
	// OnSessionEstablished (its CONNACK cannot be written): sweep finds it.
	sh.pending[d] = user
}

// OnSessionEstablished counts the device: the user's first one makes the
// user online. Runs on the client's goroutine; publishes at most one state.
func (h *Presence) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	user, ok := h.counted(cl)
	if !ok {
		return
	}
	sh := h.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u := sh.users[user]
	if u == nil {
		return
	}
	d := u.devices[cl.ID]
	if d == nil || d.cl != cl {
		return // already taken over, or swept
	}
	delete(sh.pending, d)
	d.live = true
	h.update(user, u)
}

// OnDisconnect uncounts the device, however it went; the user's last one
// makes the user offline. A connection whose session was taken over has
// been replaced already and changes nothing.
func (h *Presence) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	user, ok := h.counted(cl)
	if !ok {
		return
	}
	sh := h.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	h.remove(sh, user, cl)
}

// remove forgets cl, if it is still its client id's connection. sh.mu is held.
func (h *Presence) remove(sh *presenceShard, user string, cl *mqtt.Client) {
	u := sh.users[user]
	if u == nil {
		return
	}
	d := u.devices[cl.ID]
	if d == nil || d.cl != cl {
		return
	}
	delete(u.devices, cl.ID)
	delete(sh.pending, d)
	if d.live {
		h.update(user, u)
	}
	if len(u.devices) == 0 && u.status == protocol.StatusOffline {
		delete(sh.users, user)
	}
}

// OnWill voids a user's will on its own presence (Inbox has voided wills on
// anyone else's): the server publishes offline itself when the user's last
// device has gone, in order with the user's other states.
func (h *Presence) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	t, ok := protocol.ParseTopic(will.TopicName)
	if !ok || t.Kind != protocol.KindPresence {
		return will, nil
	}
	if _, counted := h.counted(cl); !counted {
		return will, nil
	}
	h.log.Debug("presence will replaced by the server's state", "client", cl.ID)
	will.TopicName = voidTopic
	will.Retain = false
	return will, nil
}

// OnPublish takes a status update on the user's own p/{user}:
// {"status":"away"} or {"status":"online"}. The device's status changes,
// and the server publishes the user's state if that changed; the client's
// payload itself is acknowledged, never delivered. Anything else is refused
// with 0x99 (Inbox has refused publishes on other users' presence).
func (h *Presence) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	t, ok := protocol.ParseTopic(pk.TopicName)
	if !ok || t.Kind != protocol.KindPresence {
		return pk, nil
	}
	user, counted := h.counted(cl)
	if !counted {
		return pk, nil // the inline client, and administrators' plain MQTT
	}
	if t.ID != user {
		return h.refuser.Refuse(cl, pk, &protocol.Error{Code: protocol.CodeNotAuthorized, Detail: "presence of another user"})
	}
	status, err := protocol.ParsePresenceUpdate(pk.Payload)
	if err != nil {
		return h.refuser.Refuse(cl, pk, err)
	}
	sh := h.shard(user)
	sh.mu.Lock()
	var d *device
	u := sh.users[user]
	if u != nil {
		d = u.devices[cl.ID]
	}
	if d == nil || d.cl != cl {
		sh.mu.Unlock()
		return pk, packets.CodeSuccessIgnore // the connection is being replaced
	}
	if d.limiter != nil && !d.limiter.Allow() {
		sh.mu.Unlock()
		return h.refuser.Refuse(cl, pk, &protocol.Error{Code: protocol.CodeRateLimited, Detail: "presence updates"})
	}
	d.away = status == protocol.StatusAway
	h.update(user, u)
	sh.mu.Unlock()
	return pk, packets.CodeSuccessIgnore
}

// update publishes the user's state if it changed. The shard's lock is held.
func (h *Presence) update(user string, u *userPresence) {
	status := protocol.StatusOffline
	for _, d := range u.devices {
		if !d.live {
			continue
		}
		if !d.away {
			status = protocol.StatusOnline
			break
		}
		status = protocol.StatusAway
	}
	if status == u.status {
		return
	}
	now := h.now()
	was := u.status
	u.status, u.since = status, now
	p := protocol.Presence{User: user, Status: status}
	switch {
	case status == protocol.StatusOffline:
		p.LastSeen = now.UnixMilli()
		h.markSeen(user, now)
		h.online.Dec()
	case was == protocol.StatusOffline:
		// Seen on arrival too, so that a crash leaves a recent last_seen.
		p.TS = now.UnixMilli()
		h.markSeen(user, now)
		h.online.Inc()
	default:
		p.TS = now.UnixMilli()
	}
	if h.dir != nil {
		// In a cluster p/{user} shows the user across nodes: this node's
		// view is one part of it (a device leaving here while another is
		// connected elsewhere changes nothing).
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
		cp, err := h.dir.SetPresence(ctx, user, status, now)
		cancel()
		if err != nil {
			// The bus is away, or JetStream is not ready yet: this node's
			// view, until the write goes through (retrySet; ResyncPresence
			// also writes every user again when the bus comes back).
			h.log.Warn("cluster presence unavailable: showing this node's view", "user", user, "error", err)
			h.retrySet(user)
		} else {
			p = cp
		}
	}
	h.retain(user, p)
}

// retain publishes p as user's retained state, unless it is that already.
// The user's shard lock is held.
func (h *Presence) retain(user string, p protocol.Presence) {
	topic := protocol.PresenceTopic(user)
	payload := p.AppendJSON(nil)
	if cur, ok := h.mq.retained(topic); ok && bytes.Equal(cur.Payload, payload) {
		return
	}
	if err := h.mq.publish(topic, payload, true, 1); err != nil {
		h.log.Warn("publish presence", "user", user, "status", p.Status, "error", err)
	}
}

// UseDirectory makes the hook show presence across the nodes of a cluster.
// Call it before the broker serves.
func (h *Presence) UseDirectory(d PresenceDirectory) { h.dir = d }

// UseBlocks hides a user's presence from those it blocked and those who
// blocked it. Call it before the broker serves.
func (h *Presence) UseBlocks(b Blocks) { h.blocks = b }

// PresenceChanged retains user's state in the cluster as it is now: another
// node changed it (lastSeen, if not 0, is when the user went offline
// there). Runs on the bus's goroutine.
func (h *Presence) PresenceChanged(user string, lastSeen int64) {
	if lastSeen > 0 {
		h.markSeen(user, time.UnixMilli(lastSeen))
	}
	sh := h.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	h.refresh(user)
}

// refresh reads user's state in the cluster and retains it, if this node
// retains one for user (has had subscribers). The user's shard lock is held.
func (h *Presence) refresh(user string) {
	if h.dir == nil {
		return
	}
	if _, ok := h.mq.retained(protocol.PresenceTopic(user)); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()
	states, err := h.dir.GetPresence(ctx, []string{user})
	if err != nil {
		h.log.Warn("cluster presence unavailable", "user", user, "error", err)
		return
	}
	p, ok := states[user]
	if !ok {
		p = protocol.Presence{User: user, Status: protocol.StatusOffline}
	}
	if p.Status == protocol.StatusOffline && p.LastSeen == 0 {
		if seen, err := h.lastSeen(ctx, []string{user}); err == nil && !seen[user].IsZero() {
			p.LastSeen = seen[user].UnixMilli()
		}
	}
	h.retain(user, p)
}

// NodeDown re-reads, from the cluster, the state of every user this node
// retains one for: a node that died held some of their devices.
func (h *Presence) NodeDown() {
	for topic := range h.mq.retainedTopics() {
		user, ok := strings.CutPrefix(topic, protocol.PresencePrefix)
		if !ok {
			continue
		}
		h.PresenceChanged(user, 0)
	}
}

// ResyncPresence writes this node's view of its users to the cluster again
// (the bus was away, or NATS restarted and forgot them), then re-reads the
// users it retains.
func (h *Presence) ResyncPresence() {
	if h.dir == nil {
		return
	}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for user, u := range sh.users {
			if u.status == protocol.StatusOffline {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
			if _, err := h.dir.SetPresence(ctx, user, u.status, u.since); err != nil {
				h.log.Warn("cluster presence resync", "user", user, "error", err)
			}
			cancel()
		}
		sh.mu.Unlock()
	}
	h.NodeDown()
}

// OnSubscribed gives a new subscriber to p/{user} a state when none is
// retained (after a restart, or when mochi expired it): the live one, or
// offline with the stored last_seen. mochi sends retained messages right
// after this hook, so retaining the state is enough.
func (h *Presence) OnSubscribed(_ *mqtt.Client, pk packets.Packet, codes []byte) {
	for i, sub := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		t, ok := protocol.ParseTopic(sub.Filter)
		if !ok || t.Kind != protocol.KindPresence {
			continue
		}
		if _, ok := h.mq.retained(sub.Filter); ok {
			if h.dir != nil {
				// What this node retains may be stale: it hears a user's
				// changes only while it has subscribers of p/{user}.
				sh := h.shard(t.ID)
				sh.mu.Lock()
				h.refresh(t.ID)
				sh.mu.Unlock()
			}
			continue
		}
		if err := h.retainState(t.ID); err != nil {
			h.log.Warn("retain stored presence", "user", t.ID, "error", err)
		}
	}
}

// OnRetainPublished repairs a race of mochi's: it sends the retained state
// to a new subscriber after the SUBACK, on the subscriber's goroutine, from a
// copy taken before queueing it; a change published in between reaches the
// subscriber first, and the older state after it. When the state sent is no
// longer the retained one, the current state is published again, behind it
// in every subscriber's queue (the others get it twice). Rare, and cheap to
// check: one map lookup.
func (h *Presence) OnRetainPublished(_ *mqtt.Client, pk packets.Packet) {
	t, ok := protocol.ParseTopic(pk.TopicName)
	if !ok || t.Kind != protocol.KindPresence {
		return
	}
	sh := h.shard(t.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur, ok := h.mq.retained(pk.TopicName)
	if !ok || bytes.Equal(cur.Payload, pk.Payload) {
		return
	}
	if err := h.mq.publish(pk.TopicName, cur.Payload, true, 1); err != nil {
		h.log.Warn("publish presence", "user", t.ID, "error", err)
	}
}

func (h *Presence) retainState(user string) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()
	// An unknown user has no presence (an administrator may subscribe to
	// any p/{user}).
	if _, err := h.store.PresencePrivacy(ctx, user); errors.Is(err, storage.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	seen, err := h.lastSeen(ctx, []string{user})
	if err != nil {
		return err
	}
	topic := protocol.PresenceTopic(user)
	sh := h.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := h.mq.retained(topic); ok {
		return nil // a change was published meanwhile
	}
	p := h.current(sh, user)
	var dirErr error
	if h.dir != nil {
		states, err := h.dir.GetPresence(ctx, []string{user})
		if cp, ok := states[user]; ok && err == nil {
			p = cp
		}
		dirErr = err
	}
	if t := seen[user]; p.Status == protocol.StatusOffline && !t.IsZero() && t.UnixMilli() > p.LastSeen {
		p.LastSeen = t.UnixMilli()
	}
	// Retained even when the cluster could not be asked (NATS away, or
	// JetStream not ready yet after a start): this node's own view, which
	// the retry below corrects. A node retaining a user's state hears the
	// user's changes from the other nodes (refresh); one retaining nothing
	// would ignore them, and its subscribers would wait for ever.
	h.mq.retain(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true},
		TopicName:   topic,
		Payload:     p.AppendJSON(nil),
		Created:     h.now().Unix(),
	})
	if dirErr != nil {
		h.retryRefresh(user)
		return fmt.Errorf("cluster presence of %s (this node's view retained, asked again soon): %w", user, dirErr)
	}
	return nil
}

// retrySet writes this node's view of user to the cluster again, a little
// later, until the cluster takes it or the hook closes, and retains the
// user's state in the cluster then: a change of user's devices here could
// not be written.
func (h *Presence) retrySet(user string) {
	h.retry("set/"+user, func() bool {
		if !h.dirReachable() {
			return false // not worth a shard lock held through a timeout
		}
		sh := h.shard(user)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		status, since := protocol.StatusOffline, h.now()
		if u := sh.users[user]; u != nil {
			status, since = u.status, u.since
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
		defer cancel()
		p, err := h.dir.SetPresence(ctx, user, status, since)
		if err != nil {
			return false
		}
		h.retain(user, p)
		return true
	})
}

// retryRefresh reads user's state from the cluster again, a little later,
// until the cluster answers or the hook closes: a subscriber of p/{user}
// got this node's view because the cluster's was unavailable.
func (h *Presence) retryRefresh(user string) {
	h.retry("get/"+user, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
		_, err := h.dir.GetPresence(ctx, []string{user})
		cancel()
		if err != nil {
			return false
		}
		sh := h.shard(user)
		sh.mu.Lock()
		h.refresh(user)
		sh.mu.Unlock()
		return true
	})
}

// dirReachable reports whether the presence directory can be asked now,
// if it can tell (cluster.Bus: connected to NATS).
func (h *Presence) dirReachable() bool {
	c, ok := h.dir.(interface{ Check() error })
	return !ok || c.Check() == nil
}

// retry runs attempt on a goroutine of its own, after 250 ms and then
// twice as long each time up to 5 s, until it succeeds or the hook closes.
// One retry runs per key at a time.
func (h *Presence) retry(key string, attempt func() bool) {
	if _, already := h.retrying.LoadOrStore(key, struct{}{}); already {
		return
	}
	select {
	case <-h.quit:
		h.retrying.Delete(key)
		return
	default:
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer h.retrying.Delete(key)
		for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-h.quit:
				t.Stop()
				return
			}
			if attempt() {
				return
			}
		}
	}()
}

// current returns the user's live state, without last_seen. sh.mu is held.
func (h *Presence) current(sh *presenceShard, user string) protocol.Presence {
	p := protocol.Presence{User: user, Status: protocol.StatusOffline}
	if u := sh.users[user]; u != nil && u.status != protocol.StatusOffline {
		p.Status, p.TS = u.status, u.since.UnixMilli()
	}
	return p
}

// MaySee reports whether viewer may see user's presence: itself,
// administrators, and others as user's privacy allows. It fails closed: a
// store error is logged and answers false. It implements PresenceGate.
//
// It runs for each presence filter of a SUBSCRIBE, on the subscriber's read
// goroutine, so what a flood of refused filters may cost the store is
// bounded: each refusal spends one of the viewer's RefusalRate tokens, and a
// viewer with none left is refused without a check.
func (h *Presence) MaySee(ctx context.Context, viewer, user string) bool {
	if viewer == user || h.isAdmin(viewer) {
		return true
	}
	lim := h.refusalBudget(viewer)
	if lim != nil && lim.TokensAt(h.now()) < 1 {
		return false
	}
	ok, err := h.mayView(ctx, viewer, user)
	if err != nil {
		h.log.Warn("cannot check presence privacy", "viewer", viewer, "user", user, "error", err)
	}
	if !ok && lim != nil {
		lim.AllowN(h.now(), 1)
	}
	return ok
}

// refusalBudget returns viewer's budget of refused checks, nil when there
// is no limit.
func (h *Presence) refusalBudget(viewer string) *rate.Limiter {
	if h.cfg.RefusalRate < 0 {
		return nil
	}
	h.refusalMu.Lock()
	defer h.refusalMu.Unlock()
	lim := h.refusals[viewer]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(h.cfg.RefusalRate), h.cfg.RefusalBurst)
		h.refusals[viewer] = lim
	}
	return lim
}

// pruneRefusals forgets the budgets that are full again (as new ones).
func (h *Presence) pruneRefusals() {
	now := h.now()
	h.refusalMu.Lock()
	defer h.refusalMu.Unlock()
	for viewer, lim := range h.refusals {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(h.refusals, viewer)
		}
	}
}

func (h *Presence) mayView(ctx context.Context, viewer, user string) (bool, error) {
	if viewer == user || h.isAdmin(viewer) {
		return true, nil
	}
	if h.blocks != nil {
		// Either way: a blocked user does not see its blocker, and the
		// blocker does not watch whom it blocked.
		if b, err := eitherBlocked(ctx, h.blocks, user, viewer); b || err != nil {
			return false, err
		}
	}
	privacy, err := h.store.PresencePrivacy(ctx, user)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	switch privacy {
	case storage.PrivacyEveryone:
		return true, nil
	case storage.PrivacyContacts:
		return h.store.IsContact(ctx, user, viewer)
	}
	return false, nil
}

// Lookup returns the presence of users as viewer may see them, in the order
// asked: online and away with the time they began, offline with last_seen
// (when the user was ever seen), and StatusHidden for users viewer may not
// see, unknown users among them.
func (h *Presence) Lookup(ctx context.Context, viewer string, users []string) ([]protocol.Presence, error) {
	out := make([]protocol.Presence, len(users))
	var offline []string
	for i, user := range users {
		ok, err := h.mayView(ctx, viewer, user)
		if err != nil {
			return nil, err
		}
		if !ok {
			out[i] = protocol.Presence{User: user, Status: protocol.StatusHidden}
			continue
		}
		sh := h.shard(user)
		sh.mu.Lock()
		out[i] = h.current(sh, user)
		sh.mu.Unlock()
	}
	if h.dir != nil {
		var visible []string
		for i := range out {
			if out[i].Status != protocol.StatusHidden {
				visible = append(visible, out[i].User)
			}
		}
		states, err := h.dir.GetPresence(ctx, visible)
		if err != nil {
			return nil, err
		}
		for i := range out {
			if cp, ok := states[out[i].User]; ok && out[i].Status != protocol.StatusHidden {
				out[i] = cp
			}
		}
	}
	for i := range out {
		if out[i].Status == protocol.StatusOffline {
			offline = append(offline, out[i].User)
		}
	}
	if len(offline) == 0 {
		return out, nil
	}
	seen, err := h.lastSeen(ctx, offline)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if t, ok := seen[out[i].User]; ok && out[i].Status == protocol.StatusOffline && t.UnixMilli() > out[i].LastSeen {
			out[i].LastSeen = t.UnixMilli()
		}
	}
	return out, nil
}

// Privacy returns a user's privacy setting.
func (h *Presence) Privacy(ctx context.Context, user string) (string, error) {
	return h.store.PresencePrivacy(ctx, user)
}

// SetPrivacy stores a user's privacy setting and ends the subscriptions to
// p/{user} that it no longer allows. (Subscriptions are checked when they
// are made and when the setting changes; a conversation that ends later, as
// when a member leaves a group, does not end a subscription.)
func (h *Presence) SetPrivacy(ctx context.Context, user, privacy string) error {
	if err := h.store.SetPresencePrivacy(ctx, user, privacy); err != nil {
		return err
	}
	h.PrivacyChanged(ctx, user)
	return nil
}

// PrivacyChanged ends this node's subscriptions to p/{user} that the user's
// privacy setting, as stored, no longer allows. SetPrivacy calls it; in a
// cluster, every other node calls it when told of the change.
func (h *Presence) PrivacyChanged(ctx context.Context, user string) {
	topic := protocol.PresenceTopic(user)
	for id, sub := range h.mq.subscribers(topic) {
		if sub.Filter != topic {
			continue // a wildcard: an administrator's
		}
		cl, ok := h.mq.client(id)
		if !ok {
			continue
		}
		viewer := string(cl.Properties.Username)
		if ok, err := h.mayView(ctx, viewer, user); ok && err == nil {
			continue
		} else if err != nil {
			h.log.Warn("cannot check presence privacy: ending the subscription", "viewer", viewer, "user", user, "error", err)
		}
		h.mq.unsubscribe(cl, topic)
		h.log.Debug("presence subscription ended by a privacy change", "client", id, "user", user)
	}
}

// lastSeen returns the last-seen times of users: the store's, or newer ones
// not written yet.
func (h *Presence) lastSeen(ctx context.Context, users []string) (map[string]time.Time, error) {
	seen, err := h.store.LastSeen(ctx, users)
	if err != nil {
		return nil, err
	}
	h.seenMu.Lock()
	defer h.seenMu.Unlock()
	for _, u := range users {
		for _, m := range []map[string]time.Time{h.seen, h.flushing} {
			if t, ok := m[u]; ok && t.After(seen[u]) {
				seen[u] = t
			}
		}
	}
	return seen, nil
}

func (h *Presence) markSeen(user string, t time.Time) {
	h.seenMu.Lock()
	if t.After(h.seen[user]) {
		h.seen[user] = t
	}
	h.seenMu.Unlock()
}

func (h *Presence) run() {
	defer h.wg.Done()
	flush := time.NewTicker(h.cfg.Flush)
	defer flush.Stop()
	refresh := time.NewTicker(h.cfg.Refresh)
	defer refresh.Stop()
	for {
		select {
		case <-flush.C:
			h.sweep()
			h.flush()
			h.pruneRefusals()
		case <-refresh.C:
			h.touch()
		case <-h.quit:
			return
		}
	}
}

// flush writes the gathered last-seen times; after a failure they are kept
// for the next flush.
func (h *Presence) flush() {
	h.seenMu.Lock()
	batch := h.seen
	if len(batch) == 0 {
		h.seenMu.Unlock()
		return
	}
	h.seen, h.flushing = map[string]time.Time{}, batch
	h.seenMu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	err := h.store.SetLastSeen(ctx, batch)
	cancel()

	h.seenMu.Lock()
	h.flushing = nil
	if err != nil {
		for u, t := range batch {
			if t.After(h.seen[u]) {
				h.seen[u] = t
			}
		}
	}
	h.seenMu.Unlock()
	if err != nil {
		h.flushErrors.Inc()
		h.log.Warn("write last-seen times; will retry", "users", len(batch), "error", err)
	}
}

// touch renews the last-seen times of the users who are connected.
func (h *Presence) touch() {
	now := h.now()
	var users []string
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for user, u := range sh.users {
			if u.status != protocol.StatusOffline {
				users = append(users, user)
			}
		}
		sh.mu.Unlock()
	}
	for _, user := range users {
		h.markSeen(user, now)
	}
}

// sweep forgets connections that closed before mochi established them:
// mochi calls no hook for those.
func (h *Presence) sweep() {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for d, user := range sh.pending {
			if d.cl.Closed() {
				h.remove(sh, user, d.cl)
				delete(sh.pending, d)
			}
		}
		sh.mu.Unlock()
	}
}
