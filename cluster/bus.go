// Package cluster connects the nodes of a Parley cluster through NATS: live
// delivery of stored entries to the nodes whose clients subscribe to their
// inboxes (Bus).
//
// NATS carries announcements, not data: every entry is in the shared store
// before it is announced, and core NATS (at most once) is enough. A node
// that misses announcements — NATS was unreachable, or its subscription
// queue overflowed — has its devices catch up from the store (Resync).
package cluster

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a node's connection to the cluster.
type Config struct {
	// URL lists the NATS servers, comma separated (nats://host:4222,...).
	URL string
	// Node is this node's name, unique in the cluster.
	Node string
	// Prefix starts every subject Parley uses. Default "parley".
	Prefix string
	// Workers fan out received entries, each entry of an inbox on the same
	// one (in order). Default 4.
	Workers int
	// Queue is each worker's queue of received entries; an overflow drops
	// entries (NATS's slow consumer), which a resync repairs. Default 8192.
	Queue int
	// PingInterval is how often the NATS connection is checked when idle;
	// after two unanswered pings it is considered lost. Default 5s.
	PingInterval time.Duration
	// Heartbeat is how often the node tells the others it is alive.
	// Default 1s.
	Heartbeat time.Duration
	// NodeTimeout is how long a node may go unheard before the others
	// count it dead, and its users' devices offline. Default 10s.
	NodeTimeout time.Duration
	// Replicas of the presence bucket in JetStream. Default 3 (1 when the
	// NATS cluster is smaller).
	Replicas int
	// Connections, if set, reports the node's connections (heartbeats and
	// GET /v1/cluster carry it).
	Connections func() int64
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "parley"
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Queue <= 0 {
		c.Queue = 8192
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 5 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = time.Second
	}
	if c.NodeTimeout <= 0 {
		c.NodeTimeout = 10 * time.Second
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
}

// Receiver takes what the bus brings: hooks.Inbox.
type Receiver interface {
	// Receive fans out an entry another node stored.
	Receive(inbox string, seq int64, payload []byte)
	// Resync makes this node's devices catch up on what the bus may have
	// lost.
	Resync()
	// EndSession ends the session with client id cid: a connection with
	// that id began on another node at at.
	EndSession(cid string, at time.Time)
	// MembershipChanged applies a change of a group's members made on
	// another node.
	MembershipChanged(group, removedUser string)
}

// Bus is a node's link to the others through NATS. It implements hooks.Bus.
type Bus struct {
	cfg  Config
	log  *slog.Logger
	nc   *nats.Conn
	recv atomic.Pointer[receiver]

	mu        sync.Mutex
	subs      map[string]*nats.Subscription // watched filter -> its subscription
	wildcards int                           // watched filters with wildcards
	sessions  map[string]*nats.Subscription // client id held here -> its claims' subscription

	presence atomic.Pointer[presenceReceiver]
	inc      int64     // this incarnation: when the node started (unix nanoseconds)
	started  time.Time // when it started
	peers    nodes     // the other nodes, from their heartbeats
	kvMu     sync.Mutex
	kvb      jetstream.KeyValue // the presence bucket, once created

	workers []chan *nats.Msg
	quit    chan struct{}
	wg      sync.WaitGroup
	resync  chan struct{}  // asks the resync loop for one resync
	claims  chan *nats.Msg // other nodes' claims of client ids held here

	m metrics
}

type receiver struct{ Receiver }

type metrics struct {
	connected      prometheus.GaugeFunc
	published      prometheus.Counter
	publishErrors  prometheus.Counter
	received       prometheus.Counter
	dropped        prometheus.Counter
	latency        prometheus.Histogram
	reconnects     prometheus.Counter
	watched        prometheus.GaugeFunc
	resyncRequests prometheus.Counter
	takeovers      prometheus.Counter
	nodesDown      prometheus.Counter
}

// Connect returns a node's bus. It connects to NATS in the background and
// keeps reconnecting: a node starts and serves while NATS is unreachable
// (Check reports it). reg, optional, receives its metrics.
func Connect(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Bus, error) {
	cfg.setDefaults()
	if cfg.URL == "" {
		return nil, errors.New("cluster: a NATS URL is required")
	}
	if cfg.Node == "" {
		return nil, errors.New("cluster: a node name is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{cfg: cfg, log: log, subs: map[string]*nats.Subscription{}, sessions: map[string]*nats.Subscription{},
		quit: make(chan struct{}), claims: make(chan *nats.Msg, 4096),
		started: time.Now(), peers: nodes{peers: map[string]*NodeInfo{}},
		resync: make(chan struct{}, 1)}
	b.inc = b.started.UnixNano()
	b.initMetrics()
	if reg != nil {
		reg.MustRegister(b.m.connected, b.m.published, b.m.publishErrors, b.m.received, b.m.dropped, b.m.latency,
			b.m.reconnects, b.m.watched, b.m.resyncRequests, b.m.takeovers, b.m.nodesDown)
	}
	for range cfg.Workers {
		b.workers = append(b.workers, make(chan *nats.Msg, cfg.Queue))
	}
	nc, err := nats.Connect(cfg.URL,
		nats.Name("parley "+cfg.Node),
		// Announcements are at most once: a publish while disconnected
		// fails (and is counted) instead of waiting in a buffer that would
		// deliver it after the resync has sent it already.
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.PingInterval(cfg.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.NoEcho(), // this node fanned its own entries out already
		nats.ConnectHandler(func(*nats.Conn) {
			b.log.Info("cluster bus connected", "node", cfg.Node)
			b.requestResync() // anything announced before the first connection
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.m.reconnects.Inc()
			b.kvMu.Lock()
			b.kvb = nil // NATS may have restarted without it: look it up again
			b.kvMu.Unlock()
			b.log.Info("cluster bus reconnected", "node", cfg.Node, "server", nc.ConnectedUrlRedacted())
			b.requestResync()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.log.Warn("cluster bus disconnected: live delivery to other nodes waits; stored messages are still acknowledged",
				"node", cfg.Node, "error", err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				b.m.dropped.Inc()
				b.requestResync()
				return
			}
			b.log.Warn("cluster bus", "error", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to NATS at %s: %w", cfg.URL, err)
	}
	b.nc = nc
	return b, nil
}

func (b *Bus) initMetrics() {
	b.m = metrics{
		connected: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_bus_connected",
			Help: "1 while this node is connected to the cluster's NATS, 0 otherwise."}, func() float64 {
			if b.Check() == nil {
				return 1
			}
			return 0
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_bus_published_total",
			Help: "Stored entries announced to the other nodes."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_bus_publish_errors_total",
			Help: "Announcements that failed (NATS unreachable): other nodes' devices get those entries by catch-up."}),
		received: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_bus_received_total",
			Help: "Entries announced by other nodes and received here."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_bus_dropped_total",
			Help: "Times NATS dropped announcements for this node because its queue was full (each makes devices resync)."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parley_bus_delivery_seconds",
			Help:    "From another node announcing an entry to this node fanning it out (node clocks must agree).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_bus_reconnects_total",
			Help: "Reconnections to NATS."}),
		watched: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_bus_watched_filters",
			Help: "Inbox subscription filters this node receives announcements for."}, func() float64 {
			b.mu.Lock()
			defer b.mu.Unlock()
			return float64(len(b.subs))
		}),
		resyncRequests: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_bus_resyncs_requested_total",
			Help: "Resyncs of this node's devices from the store after a bus outage or overflow."}),
		nodesDown: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_cluster_nodes_down_total",
			Help: "Other nodes found dead (unheard for cluster.node_timeout) or restarted."}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_bus_session_claims_received_total",
			Help: "Claims of a client id held here by a connection on another node."}),
	}
}

// Start delivers received entries to r until Close.
func (b *Bus) Start(r Receiver) {
	b.recv.Store(&receiver{r})
	for _, ch := range b.workers {
		b.wg.Add(1)
		go b.work(ch)
	}
	b.wg.Add(2)
	go b.resyncLoop()
	go b.claimsLoop()
	b.startHeartbeats()
}

// Close ends the node's link: its subscriptions go and pending
// announcements are flushed (for at most a second).
func (b *Bus) Close() {
	select {
	case <-b.quit:
		return
	default:
	}
	close(b.quit)
	if b.nc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = b.nc.FlushWithContext(ctx)
		cancel()
		b.nc.Close()
	}
	b.wg.Wait()
}

// Node returns this node's name.
func (b *Bus) Node() string { return b.cfg.Node }

// Conn returns the NATS connection, for the cluster's other uses of NATS.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Check reports whether the bus is connected (readiness).
func (b *Bus) Check() error {
	if b.nc == nil || !b.nc.IsConnected() {
		return errors.New("cluster bus: not connected to NATS")
	}
	return nil
}

// Status is what GET /v1/cluster shows of the bus.
func (b *Bus) Status() (connected bool, server string, watched int) {
	b.mu.Lock()
	watched = len(b.subs)
	b.mu.Unlock()
	if b.nc == nil {
		return false, "", watched
	}
	return b.nc.IsConnected(), b.nc.ConnectedUrlRedacted(), watched
}

// header is the fixed part of an announcement: when it was sent (unix
// nanoseconds) and the entry's seq. The entry's payload follows.
const header = 16

// Announce implements hooks.Bus.
func (b *Bus) Announce(inbox string, seq int64, payload []byte) {
	data := make([]byte, header+len(payload))
	binary.BigEndian.PutUint64(data, uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint64(data[8:], uint64(seq))
	copy(data[header:], payload)
	if err := b.nc.Publish(b.subject(inbox), data); err != nil {
		b.m.publishErrors.Inc()
		return
	}
	b.m.published.Inc()
}

// Watch implements hooks.Bus.
func (b *Bus) Watch(filter string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[filter]; ok {
		return
	}
	subj := b.subject(filter)
	ch := b.workers[maphash.String(workerSeed, filter)%uint64(len(b.workers))]
	sub, err := b.nc.ChanSubscribe(subj, ch)
	if err != nil {
		b.log.Warn("cluster bus: watch", "filter", filter, "error", err)
		return
	}
	// A subscription's own queue is not the bound: the worker's is.
	_ = sub.SetPendingLimits(-1, -1)
	b.subs[filter] = sub
	if strings.ContainsAny(filter, "+#") {
		b.wildcards++
	}
}

// Unwatch implements hooks.Bus.
func (b *Bus) Unwatch(filter string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sub, ok := b.subs[filter]
	if !ok {
		return
	}
	delete(b.subs, filter)
	if strings.ContainsAny(filter, "+#") {
		b.wildcards--
	}
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		b.log.Debug("cluster bus: unwatch", "filter", filter, "error", err)
	}
}

// Barrier implements hooks.Bus: once the NATS server this node is
// connected to has every subscription made so far, announcements reach this
// node. (Between NATS servers, interest travels on within a round trip of
// their routes.)
//
// While NATS is unreachable it fails at once: the subscriptions are made
// when the connection is back, and Resync covers what was missed.
func (b *Bus) Barrier(ctx context.Context) error {
	if err := b.Check(); err != nil {
		return err
	}
	return b.nc.FlushWithContext(ctx)
}

var workerSeed = maphash.MakeSeed()

func (b *Bus) work(ch chan *nats.Msg) {
	defer b.wg.Done()
	for {
		select {
		case msg := <-ch:
			b.handle(msg)
		case <-b.quit:
			return
		}
	}
}

func (b *Bus) handle(msg *nats.Msg) {
	if len(msg.Data) < header {
		b.log.Warn("cluster bus: malformed announcement", "subject", msg.Subject)
		return
	}
	inbox, ok := b.inbox(msg.Subject)
	if !ok {
		return
	}
	if !b.first(msg) {
		return // another of this node's subscriptions delivers it
	}
	sent := int64(binary.BigEndian.Uint64(msg.Data))
	seq := int64(binary.BigEndian.Uint64(msg.Data[8:]))
	switch seq {
	case membershipSeq:
		b.membershipChanged(msg.Data[header:])
		return
	case presenceSeq:
		b.presenceChanged(inbox, msg.Data[header:])
		return
	}
	b.m.received.Inc()
	if r := b.recv.Load(); r != nil {
		r.Receive(inbox, seq, msg.Data[header:])
	}
	if d := time.Duration(time.Now().UnixNano() - sent); d >= 0 {
		b.m.latency.Observe(d.Seconds())
	}
}

// first reports whether msg arrived on the first of this node's
// subscriptions its subject matches: NATS delivers a message once per
// matching subscription, and an administrator's wildcard overlaps the
// inboxes' own subscriptions.
func (b *Bus) first(msg *nats.Msg) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.wildcards == 0 {
		return true
	}
	for _, sub := range b.subs {
		if sub != msg.Sub && sub.Subject < msg.Sub.Subject && subjectMatches(sub.Subject, msg.Subject) {
			return false
		}
	}
	return true
}

func (b *Bus) requestResync() {
	b.m.resyncRequests.Inc()
	select {
	case b.resync <- struct{}{}:
	default: // one is pending already
	}
}

// resyncLoop runs the resyncs asked for, one at a time: a burst of requests
// (a reconnect and a dropped queue together) makes one or two.
func (b *Bus) resyncLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.resync:
			if r := b.presence.Load(); r != nil {
				r.ResyncPresence()
			}
			if r := b.recv.Load(); r != nil {
				r.Resync()
			}
		case <-b.quit:
			return
		}
	}
}

// subject maps an MQTT topic or filter to its NATS subject: levels become
// tokens, + and # become * and >. A '.' in an id (allowed in user and group
// ids, never a NATS token's) is written '~' (never allowed in ids).
func (b *Bus) subject(topic string) string {
	var sb strings.Builder
	sb.Grow(len(b.cfg.Prefix) + 7 + len(topic))
	sb.WriteString(b.cfg.Prefix)
	sb.WriteString(".inbox")
	for level := range strings.SplitSeq(topic, "/") {
		sb.WriteByte('.')
		switch level {
		case "+":
			sb.WriteByte('*')
		case "#":
			sb.WriteByte('>')
		case "":
			sb.WriteByte('_') // an empty level; Parley's inboxes have none
		default:
			sb.WriteString(strings.ReplaceAll(level, ".", "~"))
		}
	}
	return sb.String()
}

// inbox maps an announcement's subject back to its inbox topic.
func (b *Bus) inbox(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, b.cfg.Prefix+".inbox.")
	if !ok {
		return "", false
	}
	return strings.ReplaceAll(strings.ReplaceAll(rest, ".", "/"), "~", "."), true
}

// subjectMatches reports whether a NATS subscription subject (with * and >)
// matches a literal subject.
func subjectMatches(pattern, subject string) bool {
	for {
		p, prest, pmore := strings.Cut(pattern, ".")
		if p == ">" {
			return subject != ""
		}
		s, srest, smore := strings.Cut(subject, ".")
		if p != "*" && p != s {
			return false
		}
		if !pmore || !smore {
			return pmore == smore
		}
		pattern, subject = prest, srest
	}
}

// sessionSubject is where connections with client id cid are claimed: the
// id in base64url (a NATS token whatever bytes the id holds).
func (b *Bus) sessionSubject(cid string) string {
	return b.cfg.Prefix + ".session." + base64.RawURLEncoding.EncodeToString([]byte(cid))
}

// ClaimSession implements hooks.Bus: only the nodes holding a session with
// cid hear the claim (they subscribe to its subject), so a connection costs
// the cluster one message, not one per node.
func (b *Bus) ClaimSession(cid string, at time.Time) {
	subj := b.sessionSubject(cid)
	b.mu.Lock()
	if _, ok := b.sessions[cid]; !ok {
		// One channel and worker for every client id: a subscription with
		// a callback would cost a goroutine per session.
		sub, err := b.nc.ChanSubscribe(subj, b.claims)
		if err == nil {
			_ = sub.SetPendingLimits(-1, -1)
		}
		if err != nil {
			b.log.Warn("cluster bus: watch session", "client", cid, "error", err)
		} else {
			b.sessions[cid] = sub
		}
	}
	b.mu.Unlock()
	var data [8]byte
	binary.BigEndian.PutUint64(data[:], uint64(at.UnixNano()))
	if err := b.nc.Publish(subj, data[:]); err != nil {
		b.m.publishErrors.Inc()
	}
}

// ReleaseSession implements hooks.Bus.
func (b *Bus) ReleaseSession(cid string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if sub, ok := b.sessions[cid]; ok {
		delete(b.sessions, cid)
		_ = sub.Unsubscribe()
	}
}

// claimsLoop ends the sessions other nodes claimed.
func (b *Bus) claimsLoop() {
	defer b.wg.Done()
	prefix := b.cfg.Prefix + ".session."
	for {
		select {
		case msg := <-b.claims:
			raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(msg.Subject, prefix))
			if err != nil || len(msg.Data) < 8 {
				continue
			}
			b.m.takeovers.Inc()
			at := time.Unix(0, int64(binary.BigEndian.Uint64(msg.Data)))
			if r := b.recv.Load(); r != nil {
				r.EndSession(string(raw), at)
			}
		case <-b.quit:
			return
		}
	}
}
