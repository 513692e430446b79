package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// publishStore is what publishing writes: stamped entries (Append), and
// read markers when the store has them (ReadStore).
type publishStore interface {
	Append(ctx context.Context, m storage.Message) ([]protocol.Entry, bool, error)
	LastSeq(ctx context.Context, inbox string) (int64, error) // read markers are clamped to it
}

// publisher is the publish path: the policy (rate limits, topic bounds,
// who may post where), stamping, and storing, all on the publishing
// client's read goroutine, before mochi's PUBACK (publish). What it stored
// is kept for the connection's OnPublished (stash, take), which hands it to
// the fan-out. Refusals are reported the way each client can see them
// (refuse).
type publisher struct {
	cfg       *InboxConfig
	log       *slog.Logger
	store     publishStore
	metrics   *Metrics
	mq        broker
	now       func() time.Time
	w         *workers
	members   *members
	acks      *acks       // read markers produce read receipts
	users     *userStates // per-user publish rate and error entry budget
	delivered recentIDs   // messages this node stored and delivered lately (retries are not delivered twice)
	published sync.Map    // *mqtt.Client -> published: stored by OnPublish, delivered by OnPublished

	// blocks refuses direct messages between users one of whom blocked
	// the other; nil: nobody blocks anybody. Set before start.
	blocks Blocks

	// In a cluster (set before start, then read only): how many nodes a
	// user's rate is split between, asked by the share workers
	// (runShares) for the users publishing here.
	spread UserSpread
	shares chan shareRequest
}

func newPublisher(cfg *InboxConfig, store publishStore, mq broker, m *Metrics, w *workers, mem *members, a *acks, log *slog.Logger) *publisher {
	users := newUserStates(func() *userState {
		u := &userState{errors: rate.NewLimiter(rate.Limit(float64(cfg.ErrorEntries)/cfg.ErrorWindow.Seconds()), cfg.ErrorEntries)}
		if cfg.UserRate > 0 {
			u.rate = rate.NewLimiter(rate.Limit(cfg.UserRate), cfg.UserBurst)
		}
		return u
	})
	return &publisher{cfg: cfg, log: log, store: store, metrics: m, mq: mq, now: time.Now, w: w, members: mem, acks: a, users: users}
}

// start runs the worker that forgets idle users' states, and in a cluster
// the workers that ask for users' shares of their rate, until the workers
// stop.
func (p *publisher) start() {
	p.w.run(p.runUsers)
	if p.spread == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.w.run(func() { <-p.w.quit; cancel() }) // a question in flight ends with the workers
	for range userShareWorkers {
		p.w.run(func() { p.runShares(ctx) })
	}
}

// Splitting a user's rate between the nodes of a cluster (UserSpread).
const (
	// userShareQueue bounds the refreshes waiting for a share worker; a
	// publish that finds it full does without (its user's share is asked
	// for again at a publish a refresh interval later).
	userShareQueue = 1024
	// userShareWorkers is how many questions to UserSpread are asked at
	// once (NATS requests, pipelined on one connection).
	userShareWorkers = 2
	// userShareTimeout bounds one question.
	userShareTimeout = time.Second
)

// shareRequest asks for the share of user, whose state is u.
type shareRequest struct {
	user string
	u    *userState
}

// useSpread splits the per-user rate between the nodes holding the user's
// connections, as s says. Call it before start.
func (p *publisher) useSpread(s UserSpread) {
	p.spread = s
	p.shares = make(chan shareRequest, userShareQueue)
}

// askShare queues a refresh of the user's share of the per-user rate when
// it was last asked for UserShareRefresh ago or longer (or never). It runs
// on the publishing client's read goroutine: it never waits, and a full
// queue drops the refresh.
func (p *publisher) askShare(user string, u *userState, now time.Time) {
	if p.spread == nil || !u.shareDue(now, p.cfg.UserShareRefresh) {
		return
	}
	select {
	case p.shares <- shareRequest{user: user, u: u}:
	default:
		u.shareUnanswered()
		p.metrics.UserShares.WithLabelValues("dropped").Inc()
	}
}

// runShares answers queued refreshes until ctx ends: it asks UserSpread
// how many nodes hold the user's connections and sets the user's limiter
// to this node's share. Without an answer (NATS away) the last known share
// stays; a user with none keeps the whole per-node rate.
func (p *publisher) runShares(ctx context.Context) {
	for {
		select {
		case r := <-p.shares:
			qctx, cancel := context.WithTimeout(ctx, userShareTimeout)
			n, err := p.spread.UserNodes(qctx, r.user)
			cancel()
			if err != nil {
				r.u.shareUnanswered()
				p.metrics.UserShares.WithLabelValues("error").Inc()
				p.log.Debug("user's share of the rate unknown: the last one stays", "user", r.user, "error", err)
				continue
			}
			r.u.shareAnswered(p.now(), n, rate.Limit(p.cfg.UserRate), p.cfg.UserBurst)
			p.metrics.UserShares.WithLabelValues("ok").Inc()
		case <-ctx.Done():
			return
		}
	}
}

// share returns how many nodes user's rate is split between on this node,
// as last answered: 0 if never (a single node, a user not seen lately, or
// no answer yet), which is the whole per-node rate.
func (p *publisher) share(user string) int {
	if u := p.users.peek(user); u != nil {
		return u.share()
	}
	return 0
}

// runUsers forgets, every few seconds, the per-user states that are as new
// (full buckets, nothing suppressed), so that memory follows the users who
// are active, not every user ever seen.
func (p *publisher) runUsers() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.users.prune(p.now())
		case <-p.w.quit:
			return
		}
	}
}

// publish stamps, checks and stores what a client publishes into an inbox,
// before mochi sends the PUBACK: the commit is the one wait on this
// goroutine, and it is what makes the PUBACK mean "stored". The stored
// entries are kept for take (OnPublished), after the PUBACK.
func (p *publisher) publish(cl *mqtt.Client, sess *session, pk packets.Packet) (packets.Packet, error) {
	out, err := p.check(cl, sess, pk)
	p.stash(cl, sess)
	if sess != nil && sess.inboundAck {
		// A delivery may have taken the publish's packet id while it was
		// being stored; mochi is about to overwrite it with its PUBACK.
		p.saveClobbered(cl, sess, pk.PacketID)
	}
	return out, err
}

// take returns what the connection's last publish stored, to deliver.
func (p *publisher) take(cl *mqtt.Client) (published, bool) {
	v, ok := p.published.LoadAndDelete(cl)
	if !ok {
		return published{}, false
	}
	return v.(published), true
}

// forget drops what a publish of cl stored and never delivered (a QoS 2
// publish whose PUBREC failed: mochi calls no OnPublished).
func (p *publisher) forget(cl *mqtt.Client) { p.published.Delete(cl) }

// ownAck reports whether the acknowledgement mochi reports next on sess is
// its own PUBACK of the client's publish, not the client's of a delivery;
// if so it puts back the delivery that publish overwrote (OnPacketRead).
func (p *publisher) ownAck(cl *mqtt.Client, sess *session) bool {
	if !sess.inboundAck {
		return false
	}
	sess.inboundAck = false
	p.restoreClobbered(cl, sess)
	return true
}

// packetRead is OnPacketRead's part for QoS publishes: the delivery that
// holds the publish's packet id is remembered before mochi drops it.
func (p *publisher) packetRead(cl *mqtt.Client, sess *session, pid uint16) {
	sess.clobbered = nil
	p.saveClobbered(cl, sess, pid)
}

// stash keeps what the publish being handled stored for the connection's
// OnPublished: it is this connection's, whatever happens to the session
// meanwhile (taken over here or on another node while the commit was
// awaited: it may be gone or replaced by the time OnPublished runs).
func (p *publisher) stash(cl *mqtt.Client, sess *session) {
	if sess == nil || len(sess.pending) == 0 {
		return
	}
	stored := published{qos: sess.pendingQoS}
	if v, ok := p.published.Load(cl); ok {
		stored.entries = v.(published).entries
	}
	stored.entries = append(stored.entries, sess.pending...)
	p.published.Store(cl, stored)
	sess.pending = sess.pending[:0]
}

// published is what a connection's OnPublish stored, for its OnPublished.
type published struct {
	entries []protocol.Entry
	qos     byte
}

func (p *publisher) check(cl *mqtt.Client, sess *session, pk packets.Packet) (packets.Packet, error) {
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
		if out, err, done := p.throttle(cl, sess, pk); done {
			return out, err
		}
	}
	if detail, ok := checkTopic(pk.TopicName, p.cfg.MaxTopicLen, p.cfg.MaxTopicLevels); !ok {
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNoInbox, Detail: detail})
	}
	t, ok := protocol.ParseTopic(pk.TopicName)
	if !ok {
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNoInbox, Detail: "no such inbox"})
	}
	switch t.Kind {
	case protocol.KindOther:
		if sess.admin {
			return pk, nil // plain MQTT for administrators
		}
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNotAuthorized, Detail: "topics outside u/, g/ and p/ are for administrators"})
	case protocol.KindUser, protocol.KindGroup:
		return p.publishDM(cl, sess, pk, t)
	case protocol.KindPresence:
		if sess.admin || t.ID == sess.user {
			return pk, nil
		}
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNotAuthorized, Detail: "presence of another user"})
	}
	return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNoInbox, Detail: "no such inbox"})
}

func (p *publisher) publishDM(cl *mqtt.Client, sess *session, pk packets.Packet, t protocol.Topic) (packets.Packet, error) {
	start := p.now()
	if len(pk.Payload) > p.cfg.MaxPayload {
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeTooLarge})
	}
	if t.Kind == protocol.KindGroup && !p.members.has(t.ID, sess.user) {
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNotAuthorized, Detail: "not a member of group " + t.ID})
	}
	sub, err := protocol.ParseSubmission(pk.Payload)
	if err != nil {
		return p.refuse(cl, sess, pk, err)
	}
	if t.Kind == protocol.KindUser && t.ID != sess.user && !sess.admin && p.blocks != nil && sub.Type != protocol.TypeRead {
		if out, err, done := p.checkBlocks(cl, sess, pk, t, sub.Type); done {
			return out, err
		}
	}
	switch sub.Type {
	case protocol.TypeTyping:
		sess.pending = append(sess.pending, protocol.Entry{Inbox: t.String(), From: sess.user, To: t.ID,
			TS: start.UnixMilli(), Type: protocol.TypeTyping})
		sess.pendingQoS = 0
		p.metrics.Live.WithLabelValues(protocol.TypeTyping).Inc()
		return pk, packets.CodeSuccessIgnore
	case protocol.TypeRead:
		return p.publishRead(cl, sess, pk, t, sub)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeUnavailable, Detail: err.Error()})
	}
	m := storage.Message{ID: id.String(), From: sess.user, To: t.ID, TS: start.UnixMilli(), Type: protocol.TypeMsg,
		Cid: sub.Cid, Data: sub.Body, Inboxes: []string{t.String()}}
	if t.Kind == protocol.KindUser && t.ID != sess.user && !sess.admin {
		m.Inboxes = append(m.Inboxes, protocol.UserInbox(sess.user)) // the sender's copy
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.StoreTimeout)
	es, dup, err := p.store.Append(ctx, m)
	cancel()
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNoInbox, Detail: "no user " + t.ID})
	case errors.Is(err, storage.ErrInvalid):
		// The store cannot hold this message (the checks above should have
		// caught it): the sender's own bad input, failed alone.
		p.log.Warn("store refused message", "client", cl.ID, "error", err)
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeBadPayload, Detail: "the message cannot be stored"})
	case err != nil:
		p.log.Warn("store message", "client", cl.ID, "error", err)
		return p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeUnavailable})
	}
	p.metrics.StoreLatency.Observe(time.Since(start).Seconds())
	switch {
	case !dup:
		p.metrics.Stored.WithLabelValues(protocol.TypeMsg).Inc()
		p.delivered.add(es[0].ID)
		sess.pending = append(sess.pending, es...)
		sess.pendingQoS = 1
	case !p.delivered.has(es[0].ID):
		// A retry of a message this node did not deliver: the node that
		// stored it may have died between its commit and its delivery
		// (the sender got no PUBACK, and retried here). Delivered now, it
		// reaches the recipient in order, before the sender's next
		// message; a device that had it gets a repeat, dropped by seq.
		p.metrics.Redelivered.Inc()
		p.delivered.add(es[0].ID)
		sess.pending = append(sess.pending, es...)
		sess.pendingQoS = 1
	}
	// A retry of a message this node delivered is acknowledged and not
	// delivered again.
	return pk, packets.CodeSuccessIgnore
}

// checkBlocks refuses a message or typing notification between a sender
// and a recipient one of whom blocked the other (done). The blocked sender
// is told only what the protocol must: that the message was not stored,
// as 0x87 "not authorized" (an error entry for MQTT 3.1.1), with a reason
// that says the recipient does not accept it, not why. Its typing
// notifications are dropped without a word, as QoS 0 allows. A sender who
// blocked the recipient is told so, to unblock first. A store that cannot
// say fails the publish as unavailable (retryable), never lets it through.
//
// It runs for every DM on the sender's read goroutine, and almost always
// answers from the block lists in memory: no context of its own is made
// for it. A list read from the store is bounded by the store's own
// operation timeout.
func (p *publisher) checkBlocks(cl *mqtt.Client, sess *session, pk packets.Packet, t protocol.Topic, typ string) (packets.Packet, error, bool) {
	ctx := context.Background()
	byRecipient, err := p.blocks.Blocked(ctx, t.ID, sess.user)
	var bySender bool
	if err == nil && !byRecipient {
		bySender, err = p.blocks.Blocked(ctx, sess.user, t.ID)
	}
	switch {
	case err != nil:
		p.log.Warn("check blocks", "client", cl.ID, "error", err)
		out, err := p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeUnavailable})
		return out, err, true
	case !byRecipient && !bySender:
		return pk, nil, false
	case typ == protocol.TypeTyping:
		p.metrics.Refused.WithLabelValues("blocked").Inc()
		return pk, packets.CodeSuccessIgnore, true
	case bySender:
		out, err := p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNotAuthorized,
			Detail: "you blocked " + t.ID + ": unblock them to send"})
		return out, err, true
	}
	out, err := p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeNotAuthorized,
		Detail: t.ID + " does not accept your messages"})
	return out, err, true
}

// throttle takes a publish's token from the connection's and the user's
// rate limits. done is false when the publish may go on, possibly after
// waiting here, on the client's read goroutine, for up to maxRateWait: a
// client without PUBACK codes (MQTT 3.1.1, QoS 0) is slowed down rather
// than refused, since a refusal it cannot read would be acknowledged
// unstored. An MQTT 5 client at QoS 1 does not wait: it gets 0x97. In a
// cluster the user's limit is this node's share of the user's rate
// (askShare).
func (p *publisher) throttle(cl *mqtt.Client, sess *session, pk packets.Packet) (out packets.Packet, err error, done bool) {
	sess.mu.Lock()
	lim := sess.limiter
	sess.mu.Unlock()
	var user *userState
	var userLim *rate.Limiter
	if p.cfg.UserRate > 0 {
		user = p.users.get(sess.user)
		userLim = user.rate
	}
	if lim == nil && userLim == nil {
		return pk, nil, false
	}
	maxWait := maxRateWait
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		maxWait = 0
	}
	now := p.now()
	wait, ok := reserve(now, maxWait, lim, userLim)
	if user != nil {
		// In a cluster: the user's share of the rate is refreshed in the
		// background, never waited for here.
		p.askShare(sess.user, user, now)
	}
	if !ok {
		out, err = p.refuse(cl, sess, pk, &protocol.Error{Code: protocol.CodeRateLimited})
		return out, err, true
	}
	if wait > 0 {
		p.metrics.RateWaits.Inc()
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.w.quit:
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
func (p *publisher) refuse(cl *mqtt.Client, sess *session, pk packets.Packet, err error) (packets.Packet, error) {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		pe = &protocol.Error{Code: protocol.CodeUnavailable, Detail: err.Error()}
	}
	p.metrics.Refused.WithLabelValues(codeLabel(pe.Code)).Inc()
	reason := pe.Error()
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		sess.inboundAck = false
		p.restoreClobbered(cl, sess)
		if pe.Code == protocol.CodeRateLimited && sess.strikes.add(p.now(), p.cfg.RateStrikes, p.cfg.StrikeWindow) {
			p.disconnectForRate(cl)
			return pk, packets.ErrRejectPacket
		}
		return pk, packets.Code{Code: byte(pe.Code), Reason: reason}
	}
	switch pe.Code {
	case protocol.CodeUnavailable:
		sess.inboundAck = false
		p.restoreClobbered(cl, sess)
		cl.Stop(packets.ErrServerUnavailable)
		return pk, packets.ErrRejectPacket
	case protocol.CodeRateLimited:
		sess.inboundAck = false
		p.restoreClobbered(cl, sess)
		p.disconnectForRate(cl)
		return pk, packets.ErrRejectPacket
	}
	if !sess.admin {
		e, stored, serr := p.storeError(sess.user, pe.Code, reason, pk.TopicName, cidOf(pk.Payload))
		switch {
		case serr != nil:
			p.log.Warn("store error entry", "client", cl.ID, "error", serr)
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
func (p *publisher) disconnectForRate(cl *mqtt.Client) {
	p.metrics.RateDisconnects.Inc()
	p.log.Info("disconnecting a client over its rate limits", "client", cl.ID)
	p.mq.disconnect(cl, packets.ErrMessageRateTooHigh)
}

// refuseLate reports a publish refused by a hook that runs after Inbox
// (Presence) exactly as the publisher reports its own refusals.
func (p *publisher) refuseLate(cl *mqtt.Client, sess *session, pk packets.Packet, err error) (packets.Packet, error) {
	out, rerr := p.refuse(cl, sess, pk, err)
	p.stash(cl, sess) // an error entry, for OnPublished
	return out, rerr
}

func codeLabel(c protocol.Code) string {
	const hex = "0123456789abcdef"
	return "0x" + string([]byte{hex[c>>4], hex[c&0xf]})
}

// cidOf returns the cid of a payload, if it has one, for error entries.
func cidOf(payload []byte) string {
	if !bytes.Contains(payload, []byte(`"cid"`)) {
		return ""
	}
	var v struct {
		Cid string `json:"cid"`
	}
	if json.Unmarshal(payload, &v) != nil || !protocol.ValidCid(v.Cid) {
		return ""
	}
	return v.Cid
}

// storeError stores an error entry in user's inbox, if the user's budget
// (ErrorEntries per ErrorWindow) allows one; stored is false when it does
// not, and the refusal is counted in the next entry stored. The entry
// echoes the topic cut short and never the payload (protocol.ErrorData).
func (p *publisher) storeError(user string, code protocol.Code, reason, topic, cid string) (e protocol.Entry, stored bool, err error) {
	suppressed, ok := p.users.get(user).takeError(p.now())
	if !ok {
		p.metrics.ErrorsSuppressed.Inc()
		return protocol.Entry{}, false, nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return protocol.Entry{}, false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.StoreTimeout)
	defer cancel()
	es, _, err := p.store.Append(ctx, storage.Message{ID: id.String(), From: user, To: user, TS: p.now().UnixMilli(),
		Type: protocol.TypeError, Cid: cid, Data: protocol.ErrorDataSuppressed(code, reason, topic, suppressed),
		Inboxes: []string{protocol.UserInbox(user)}})
	if err != nil {
		return protocol.Entry{}, false, err
	}
	p.metrics.Stored.WithLabelValues(protocol.TypeError).Inc()
	return es[0], true, nil
}

// saveClobbered remembers the delivery that holds packet id pid, if any.
func (p *publisher) saveClobbered(cl *mqtt.Client, sess *session, pid uint16) {
	if out, ok := p.mq.outboundAt(cl, pid); ok {
		sess.clobbered = &out
	}
}

// restoreClobbered puts back the delivery OnPacketRead saved, if any.
func (p *publisher) restoreClobbered(cl *mqtt.Client, sess *session) {
	out := sess.clobbered
	if out == nil {
		return
	}
	sess.clobbered = nil
	p.mq.restore(cl, *out)
}
