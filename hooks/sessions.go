package hooks

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"

	"github.com/parleychat/parley/protocol"
)

// session is Parley's state for one MQTT client id. It outlives a
// connection when the session is persistent. It is the one record the
// Inbox's parts share: each field says which part owns it.
type session struct {
	// Set when the session is made, then read only.
	id    string
	user  string
	admin bool

	// Owned by the client's read goroutine (the publisher): set in
	// OnPublish, used in OnPublished, which mochi calls next on the same
	// goroutine.
	pending    []protocol.Entry
	pendingQoS byte
	inboundAck bool            // OnQosComplete is about to report our PUBACK of the client's own publish
	clobbered  *packets.Packet // an outbound delivery mochi drops for the client's publish (OnPacketRead)
	strikes    strikes         // refusals for rate (RateStrikes); reset by each connection
	trackedAs  string          // the user whose persistent sessions count it (guarded by sessionTable.persistMu)
	stopped    time.Time       // when its connection last ended (guarded by mu): mochi's StopTime has whole seconds
	since      time.Time       // when its connection began (guarded by mu)

	mu         sync.Mutex // guards the fields below
	cl         *mqtt.Client
	persistent bool                       // the session outlives the connection
	fresh      bool                       // clean start: cursors restart at the inbox's end
	limiter    *rate.Limiter              // publish rate into inboxes (publisher)
	inflight   map[uint16]protocol.Header // deliveries awaiting PUBACK, by packet id (acks; sendDirect adds)
	cursors    map[string]*watermark      // inbox -> acknowledged seqs, persistent sessions (acks)
	gates      map[string]*gate           // inbox -> catch-up in progress (fanout)
	ackWait    chan struct{}              // closed and replaced on each acknowledgement
	nextID     uint16                     // last packet id used by catch-up (broker.freePacketID)
}

// connected returns the session's current connection, and whether the
// session outlives it.
func (s *session) connected() (*mqtt.Client, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cl, s.persistent
}

// gateOf returns the session's gate for inbox, if a catch-up is open.
func (s *session) gateOf(inbox string) *gate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gates[inbox]
}

// gate is one device's catch-up on one inbox (fanout.go, catchup.go).
type gate struct {
	sess  *session
	cl    *mqtt.Client
	inbox string
	qos   byte
	// guarded by fanout.regMu
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
	// end is the inbox's last seq read when the subscription was granted
	// (hasEnd), for a session with no cursor for it in memory: where a
	// device new to the inbox starts, whenever its catch-up gets to run. A
	// gate that supersedes one on another connection (the device came back
	// before its first catch-up ran) inherits it. Guarded by fanout.regMu.
	end    int64
	hasEnd bool
}

// sessionTable holds the node's sessions by client id, and each user's
// persistent ones (MaxSessionsPerUser, caps.go).
type sessionTable struct {
	byID sync.Map // client id -> *session

	persistMu sync.Mutex                     // guards persisted
	persisted map[string]map[string]*session // user -> client id -> its persistent session
	max       int                            // MaxSessionsPerUser
}

func newSessionTable(max int) *sessionTable {
	return &sessionTable{persisted: map[string]map[string]*session{}, max: max}
}

// of returns cl's session.
func (t *sessionTable) of(cl *mqtt.Client) *session { return t.get(cl.ID) }

// get returns the session of client id.
func (t *sessionTable) get(id string) *session {
	if v, ok := t.byID.Load(id); ok {
		return v.(*session)
	}
	return nil
}

func (t *sessionTable) put(s *session) { t.byID.Store(s.id, s) }

// remove forgets s, if it is still the session of its client id.
func (t *sessionTable) remove(s *session) bool { return t.byID.CompareAndDelete(s.id, s) }

// each calls f with every session until it returns false.
func (t *sessionTable) each(f func(*session) bool) {
	t.byID.Range(func(_, v any) bool { return f(v.(*session)) })
}

// workers is the lifecycle the Inbox's parts share: the goroutines they
// start are counted in wg and end when quit is closed.
type workers struct {
	quit   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once
}

func newWorkers() *workers { return &workers{quit: make(chan struct{})} }

// run runs f on a goroutine of its own, counted until it returns.
func (w *workers) run(f func()) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		f()
	}()
}

// stop closes quit and waits for every goroutine. Safe to call twice.
func (w *workers) stop() {
	w.once.Do(func() {
		w.closed.Store(true)
		close(w.quit)
		w.wg.Wait()
	})
}

// establish makes or resumes the session of a connection that is being
// accepted: a clean start replaces the client id's session, a resumed one
// keeps its cursors and gates. The connection's limits start anew; in a
// cluster, the other nodes are told to end their session of the client id
// (a takeover across nodes); a persistent session counts against its
// user's MaxSessionsPerUser.
func (h *Inbox) establish(cl *mqtt.Client, pk packets.Packet) *session {
	user := string(cl.Properties.Username)
	persistent := !pk.Connect.Clean
	if cl.Properties.ProtocolVersion == 5 {
		persistent = cl.Properties.Props.SessionExpiryInterval > 0
	}
	admin := h.isAdmin(user)
	sess := h.sessions.of(cl)
	// A session's user and role never change (its fields id, user and
	// admin are read without its lock): a client id taken by another
	// user, or role, starts a session of its own.
	if sess == nil || pk.Connect.Clean || sess.user != user || sess.admin != admin {
		sess = &session{id: cl.ID, user: user, admin: admin, cursors: map[string]*watermark{}, gates: map[string]*gate{}}
		sess.fresh = pk.Connect.Clean
		h.sessions.put(sess)
	}
	now := h.now()
	sess.mu.Lock()
	sess.cl = cl
	sess.since = now
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
	if h.fan.bus != nil {
		h.fan.bus.ClaimSession(cl.ID, now)
	}
	if persistentNow {
		if victim := h.sessions.track(sess); victim != "" {
			h.evictSession(victim, user)
		}
	} else {
		h.sessions.untrack(sess)
	}
	return sess
}
