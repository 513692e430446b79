package hooks

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Per-user caps on what a user holds on this node: connections (Auth) and
// persistent sessions (Inbox).
//
// Over the connection cap a new connection is refused (CONNACK 0x97 quota
// exceeded; MQTT 3.1.1: 3 server unavailable) rather than an old one
// evicted: evicting would let auto-reconnecting clients of one account
// (or a stolen token) knock each other off in a loop, while a refusal is
// stable and tells the new device why.
//
// Over the persistent-session cap the user's session that has been
// disconnected longest is evicted instead: sessions pile up when an app is
// reinstalled under a new client id, and refusing would lock the user out
// of persistent sessions for up to MaxSessionExpiry because of devices that
// are gone. Nothing stored is lost: the evicted device's cursors stay in the
// store, and a device coming back with that client id starts a new session
// and catches up from them. With the connection cap (16) below the session
// cap (32), a user over the session cap always has a disconnected session.

// track records sess as one of its user's persistent sessions and,
// when the user now holds more than MaxSessionsPerUser, returns the client
// id of the one to evict: the user's disconnected session that stopped
// first. Lock order: persistMu before session.mu.
func (t *sessionTable) track(sess *session) (victim string) {
	t.persistMu.Lock()
	defer t.persistMu.Unlock()
	t.untrackLocked(sess)
	m := t.persisted[sess.user]
	if m == nil {
		m = map[string]*session{}
		t.persisted[sess.user] = m
	}
	m[sess.id] = sess
	sess.trackedAs = sess.user
	if t.max < 0 || len(m) <= t.max {
		return ""
	}
	var oldest time.Time
	for id, s := range m {
		if s == sess {
			continue
		}
		s.mu.Lock()
		cl, t := s.cl, s.stopped
		s.mu.Unlock()
		if cl == nil || !cl.Closed() {
			continue
		}
		// Ties (never seen: the clock has nanoseconds) go to the smaller
		// id, so that the choice does not depend on map order.
		if victim == "" || t.Before(oldest) || (t.Equal(oldest) && id < victim) {
			victim, oldest = id, t
		}
	}
	return victim
}

// untrack forgets sess as a persistent session.
func (t *sessionTable) untrack(sess *session) {
	t.persistMu.Lock()
	t.untrackLocked(sess)
	t.persistMu.Unlock()
}

func (t *sessionTable) untrackLocked(sess *session) {
	if sess.trackedAs == "" {
		return
	}
	if m := t.persisted[sess.trackedAs]; m != nil && m[sess.id] == sess {
		delete(m, sess.id)
		if len(m) == 0 {
			delete(t.persisted, sess.trackedAs)
		}
	}
	sess.trackedAs = ""
}

// evictSession ends the disconnected persistent session of client id as
// mochi's expiry would: its subscriptions and inflight messages go, and
// Parley forgets it. Runs on the read goroutine of the connection that
// pushed the user over the cap.
//
// mochi removes a client's subscriptions by client id: the session is
// evicted only while mochi still holds this very, disconnected, client
// under the id, so that a device reconnecting with it at the same moment
// keeps its subscriptions (mochi offers no compare-and-delete; the window
// left is a few instructions wide).
func (h *Inbox) evictSession(id, user string) {
	sess := h.sessions.get(id)
	if sess == nil {
		return
	}
	cl, _ := sess.connected()
	if cl == nil {
		h.sessions.untrack(sess)
		return
	}
	if !cl.Closed() || !h.mq.expireSession(id, cl) {
		return
	}
	h.OnClientExpired(cl)
	h.metrics.SessionsEvicted.Inc()
	h.log.Info("persistent session evicted: the user holds too many", "client", id, "user", user,
		"max_sessions_per_user", h.cfg.MaxSessionsPerUser)
}

// admit records cl as a connection of user unless the user already has
// MaxConnectionsPerUser others: a connection that takes over a session
// (same client id) replaces one and is always admitted. Connections that
// closed without OnDisconnect (mochi calls none when the CONNACK cannot be
// written) are dropped here.
func (h *Auth) admit(user string, cl *mqtt.Client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	conns := h.conns[user]
	if conns == nil {
		conns = map[*mqtt.Client]struct{}{}
		h.conns[user] = conns
	}
	n := 0
	for c := range conns {
		switch {
		case c.Closed():
			delete(conns, c)
		case c.ID != cl.ID:
			n++
		}
	}
	if h.cfg.MaxConnectionsPerUser > 0 && n >= h.cfg.MaxConnectionsPerUser {
		if len(conns) == 0 {
			delete(h.conns, user)
		}
		return false
	}
	conns[cl] = struct{}{}
	return true
}

// release forgets a connection admit recorded.
func (h *Auth) release(user string, cl *mqtt.Client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if conns := h.conns[user]; conns != nil {
		delete(conns, cl)
		if len(conns) == 0 {
			delete(h.conns, user)
		}
	}
}

// errTooManyConnections is the CONNACK of a connection over the cap.
var errTooManyConnections = packets.Code{Code: packets.ErrQuotaExceeded.Code, Reason: "too many connections for this user"}
