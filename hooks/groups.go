package hooks

import (
	"context"
	"errors"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// GroupStore is what the Inbox hook reads of groups.
type GroupStore interface {
	GetGroup(ctx context.Context, id string) (storage.Group, error)
}

// groupCache remembers the members of groups in use, so that the publish and
// delivery paths do not read the store for every message. Changes made
// through this node invalidate it at once (MembershipChanged); changes made
// on another node are seen within ttl.
type groupCache struct {
	store GroupStore
	ttl   time.Duration

	mu     sync.Mutex // guards groups
	groups map[string]*groupInfo
}

type groupInfo struct {
	members map[string]bool
	loaded  time.Time
	missing bool // the group does not exist
}

const groupCacheMax = 100_000

func (c *groupCache) get(ctx context.Context, id string) (*groupInfo, error) {
	c.mu.Lock()
	gi := c.groups[id]
	c.mu.Unlock()
	if gi != nil && time.Since(gi.loaded) < c.ttl {
		return gi, nil
	}
	g, err := c.store.GetGroup(ctx, id)
	gi = &groupInfo{members: map[string]bool{}, loaded: time.Now()}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		gi.missing = true
	case err != nil:
		return nil, err
	default:
		for _, m := range g.Members {
			gi.members[m.User] = true
		}
	}
	c.mu.Lock()
	if len(c.groups) >= groupCacheMax {
		clear(c.groups)
	}
	c.groups[id] = gi
	c.mu.Unlock()
	return gi, nil
}

func (c *groupCache) forget(id string) {
	c.mu.Lock()
	delete(c.groups, id)
	c.mu.Unlock()
}

// isMember reports whether user currently belongs to group; a store error
// counts as no.
func (h *Inbox) isMember(group, user string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()
	gi, err := h.groups.get(ctx, group)
	if err != nil {
		h.log.Warn("group membership", "group", group, "error", err)
		return false
	}
	return gi.members[user]
}

// memberCount returns the number of current members of group (0 if unknown).
func (h *Inbox) memberCount(group string) int {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StoreTimeout)
	defer cancel()
	gi, err := h.groups.get(ctx, group)
	if err != nil {
		return 0
	}
	return len(gi.members)
}

// MayReadGroup reports whether user may subscribe to the group's inbox.
func (h *Inbox) MayReadGroup(user, group string) bool { return h.isMember(group, user) }

// Deliver hands a stored entry to the inbox's live subscribers (after the
// commit that stored it).
func (h *Inbox) Deliver(e protocol.Entry) { h.deliver(e, 1) }

// MembershipChanged applies a membership change made through this node at
// once: the group's members are read again, and a removed member's
// subscriptions to the group (on every connection and stored session) end,
// so that it receives nothing more.
func (h *Inbox) MembershipChanged(group, removedUser string) {
	h.groups.forget(group)
	if removedUser == "" {
		return
	}
	topic := protocol.GroupInbox(group)
	for _, cl := range h.srv.Clients.GetAll() {
		if string(cl.Properties.Username) != removedUser {
			continue
		}
		h.unsubscribe(cl, topic)
	}
}

// unsubscribe removes a client's subscription to topic, as if it had
// unsubscribed.
func (h *Inbox) unsubscribe(cl *mqtt.Client, topic string) {
	if _, ok := cl.State.Subscriptions.Get(topic); !ok {
		return
	}
	h.srv.Topics.Unsubscribe(topic, cl.ID)
	cl.State.Subscriptions.Delete(topic)
	h.interest.remove(cl.ID, topic)
	if sess := h.session(cl); sess != nil {
		sess.mu.Lock()
		g := sess.gates[topic]
		sess.mu.Unlock()
		if g != nil {
			h.closeGate(g)
		}
	}
}
