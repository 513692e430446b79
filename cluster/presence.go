package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/protocol"
)

// Presence across nodes. Each node knows the devices connected to it (the
// Presence hook). What the cluster shows of a user is the sum of the nodes'
// views, kept in a JetStream key-value bucket (one key per user online
// somewhere: which nodes hold a device, online or away, since when, in
// which incarnation), changed with compare-and-set so that two nodes
// changing one user at once both count. After each change the node
// announces it on the user's presence subject (parley.inbox.p.{user}),
// heard by the nodes whose clients subscribe to p/{user}; they read the
// bucket again and retain the new state, so p/{user} says the same on every
// node. A node found dead (heartbeats) no longer counts: the others
// re-evaluate the users they show, and readers ignore its entries.
//
// The bucket is in memory: after a NATS restart every node writes its users
// again (ResyncPresence).

// PresenceReceiver is told what changes presence on this node: the Presence
// hook.
type PresenceReceiver interface {
	// PresenceChanged: another node changed user's state; lastSeen, if
	// not 0, is when the user went offline there.
	PresenceChanged(user string, lastSeen int64)
	// NodeDown: a node died or restarted; the users it held change.
	NodeDown()
	// ResyncPresence: the bus is back; write this node's users again.
	ResyncPresence()
}

type presenceReceiver struct{ PresenceReceiver }

// presenceSeq marks an announcement on a presence subject (p/{user}): a
// change to read from the bucket, not an entry.
const presenceSeq = -2

// presenceValue is a user's key: the nodes with a device of the user.
type presenceValue struct {
	Nodes map[string]nodePresence `json:"nodes"`
}

type nodePresence struct {
	Status      string `json:"s"`     // online or away
	Since       int64  `json:"since"` // unix milliseconds
	Incarnation int64  `json:"inc"`
}

// UsePresence connects the Presence hook. Call it before Start.
func (b *Bus) UsePresence(r PresenceReceiver) { b.presence.Store(&presenceReceiver{r}) }

// kv returns the presence bucket, creating it on first use (NATS may have
// been unreachable when the node started).
func (b *Bus) kv(ctx context.Context) (jetstream.KeyValue, error) {
	b.kvMu.Lock()
	defer b.kvMu.Unlock()
	if b.kvb != nil {
		return b.kvb, nil
	}
	if err := b.Check(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(b.nc)
	if err != nil {
		return nil, fmt.Errorf("cluster: jetstream: %w", err)
	}
	cfg := jetstream.KeyValueConfig{Bucket: b.cfg.Prefix + "_presence", History: 1, Storage: jetstream.MemoryStorage,
		Replicas: b.cfg.Replicas, Description: "Parley presence: the nodes holding each user's devices"}
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil && cfg.Replicas > 1 {
		// A NATS cluster smaller than Replicas (one server, in development):
		// one replica, said loudly.
		b.log.Warn("presence bucket: replicas refused, using 1", "replicas", cfg.Replicas, "error", err)
		cfg.Replicas = 1
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: presence bucket: %w", err)
	}
	b.kvb = kv
	return kv, nil
}

// presenceKey is a user's key: user ids are valid keys as they are.
func presenceKey(user string) string { return user }

// SetPresence records this node's view of user — status online or away
// since since, or offline: no device here — and returns the user's state in
// the whole cluster (protocol.Presence: online or away with the time it
// began, offline with the time the last node to have a device stopped
// counting, when known). It implements hooks.PresenceDirectory.
func (b *Bus) SetPresence(ctx context.Context, user, status string, since time.Time) (protocol.Presence, error) {
	kv, err := b.kv(ctx)
	if err != nil {
		return protocol.Presence{}, err
	}
	key := presenceKey(user)
	for attempt := 0; ; attempt++ {
		var v presenceValue
		var rev uint64
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return protocol.Presence{}, fmt.Errorf("cluster: read presence of %s: %w", user, err)
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				b.log.Warn("presence bucket: unreadable value, replaced", "user", user, "error", err)
				v = presenceValue{}
			}
		}
		if v.Nodes == nil {
			v.Nodes = map[string]nodePresence{}
		}
		for node, np := range v.Nodes {
			if node != b.cfg.Node && !b.alive(node, np.Incarnation) {
				delete(v.Nodes, node) // a dead node's devices are gone
			}
		}
		if status == protocol.StatusOnline || status == protocol.StatusAway {
			// A status the user has on other nodes already began when it
			// began there: the user stays online since then when the
			// device that made it so leaves.
			s := since.UnixMilli()
			delete(v.Nodes, b.cfg.Node)
			if others := b.aggregate(user, v); others.Status == status && others.TS > 0 && others.TS < s {
				s = others.TS
			}
			v.Nodes[b.cfg.Node] = nodePresence{Status: status, Since: s, Incarnation: b.inc}
		} else {
			delete(v.Nodes, b.cfg.Node)
		}
		switch {
		case len(v.Nodes) == 0 && rev == 0:
			err = nil
		case len(v.Nodes) == 0:
			err = kv.Delete(ctx, key, jetstream.LastRevision(rev))
		case rev == 0:
			data, _ := json.Marshal(v)
			_, err = kv.Create(ctx, key, data)
		default:
			data, _ := json.Marshal(v)
			_, err = kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			p := b.aggregate(user, v)
			if p.Status == protocol.StatusOffline && status != protocol.StatusOnline && status != protocol.StatusAway {
				p.LastSeen = since.UnixMilli() // the last device anywhere just left, here
			}
			b.announcePresence(user, p.LastSeen)
			return p, nil
		}
		if attempt == 20 || ctx.Err() != nil {
			return protocol.Presence{}, fmt.Errorf("cluster: write presence of %s: %w", user, err)
		}
		// Another node changed the user meanwhile: read it again.
	}
}

// GetPresence returns the users' states in the whole cluster (users
// offline everywhere are absent). It implements hooks.PresenceDirectory.
func (b *Bus) GetPresence(ctx context.Context, users []string) (map[string]protocol.Presence, error) {
	kv, err := b.kv(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]protocol.Presence, len(users))
	for _, user := range users {
		e, err := kv.Get(ctx, presenceKey(user))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cluster: read presence of %s: %w", user, err)
		}
		var v presenceValue
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			continue
		}
		out[user] = b.aggregate(user, v)
	}
	return out, nil
}

// UserNodes returns how many live nodes hold a device of user, from the
// presence bucket (nodes found dead, or in an incarnation that is over, do
// not count). This node counts whether or not the bucket has its device
// yet: it asks because a client of the user publishes here, so the answer
// is at least 1. It implements hooks.UserSpread, which splits the user's
// publish rate between those nodes.
func (b *Bus) UserNodes(ctx context.Context, user string) (int, error) {
	if err := b.Check(); err != nil {
		return 0, err // fail at once, not at ctx's deadline
	}
	kv, err := b.kv(ctx)
	if err != nil {
		return 0, err
	}
	e, err := kv.Get(ctx, presenceKey(user))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 1, nil
	case err != nil:
		return 0, fmt.Errorf("cluster: read presence of %s: %w", user, err)
	}
	var v presenceValue
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return 0, fmt.Errorf("cluster: read presence of %s: %w", user, err)
	}
	n := 1 // this node
	for node, np := range v.Nodes {
		if node != b.cfg.Node && b.alive(node, np.Incarnation) {
			n++
		}
	}
	return n, nil
}

// aggregate is what v shows of user: online if a live node has an online
// device, else away if one has an away device (since the earliest such),
// else offline (last seen when the last dead node holding a device was
// last heard, if any).
func (b *Bus) aggregate(user string, v presenceValue) protocol.Presence {
	p := protocol.Presence{User: user, Status: protocol.StatusOffline}
	var online, away int64
	var lastHeard time.Time
	for node, np := range v.Nodes {
		if !b.alive(node, np.Incarnation) {
			if t := b.lastHeard(node); t.After(lastHeard) {
				lastHeard = t
			}
			continue
		}
		switch np.Status {
		case protocol.StatusOnline:
			if online == 0 || np.Since < online {
				online = np.Since
			}
		case protocol.StatusAway:
			if away == 0 || np.Since < away {
				away = np.Since
			}
		}
	}
	switch {
	case online > 0:
		p.Status, p.TS = protocol.StatusOnline, online
	case away > 0:
		p.Status, p.TS = protocol.StatusAway, away
	case !lastHeard.IsZero():
		p.LastSeen = lastHeard.UnixMilli()
	}
	return p
}

// announcePresence tells the nodes watching p/{user} that it changed; when
// it went offline, lastSeen says when (the bucket forgets users offline
// everywhere, and the store has the time only after its next flush).
func (b *Bus) announcePresence(user string, lastSeen int64) {
	data := make([]byte, header+8)
	binary.BigEndian.PutUint64(data[header:], uint64(lastSeen))
	binary.BigEndian.PutUint64(data, uint64(time.Now().UnixNano()))
	seq := int64(presenceSeq)
	binary.BigEndian.PutUint64(data[8:], uint64(seq))
	if err := b.nc.Publish(b.subject(protocol.PresenceTopic(user)), data); err != nil {
		b.m.publishErrors.Inc()
	}
}

func (b *Bus) presenceChanged(topic string, body []byte) {
	user, ok := strings.CutPrefix(topic, protocol.PresencePrefix)
	if !ok {
		return
	}
	var lastSeen int64
	if len(body) >= 8 {
		lastSeen = int64(binary.BigEndian.Uint64(body))
	}
	if r := b.presence.Load(); r != nil {
		r.PresenceChanged(user, lastSeen)
	}
}
