package hooks

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/parleychat/parley/storage"
)

// GroupStore is what the Inbox hook reads of groups. A nil GroupStore
// knows no group.
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
	members map[string]int64 // current member -> its storage.Member.FromSeq
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
	var g storage.Group
	err := storage.ErrNotFound
	if c.store != nil {
		g, err = c.store.GetGroup(ctx, id)
	}
	gi = &groupInfo{members: map[string]int64{}, loaded: time.Now()}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		gi.missing = true
	case err != nil:
		return nil, err
	default:
		for _, m := range g.Members {
			gi.members[m.User] = m.FromSeq
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

// members answers who belongs to a group, for the publish path (may this
// user post here?), the fan-out (is this subscriber still a member?) and
// receipts (of how many?). A store error counts as "not a member".
type members struct {
	cache   groupCache
	timeout time.Duration
	log     *slog.Logger
}

func newMembers(store GroupStore, ttl, timeout time.Duration, log *slog.Logger) *members {
	return &members{cache: groupCache{store: store, ttl: ttl, groups: map[string]*groupInfo{}}, timeout: timeout, log: log}
}

// has reports whether user currently belongs to group; a store error
// counts as no.
func (m *members) has(group, user string) bool {
	_, ok := m.member(group, user)
	return ok
}

// member reports whether user currently belongs to group, and the first
// seq of the group's inbox it reads (storage.Member.FromSeq: 0 from the
// start); a store error counts as no.
func (m *members) member(group, user string) (fromSeq int64, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	gi, err := m.cache.get(ctx, group)
	if err != nil {
		m.log.Warn("group membership", "group", group, "error", err)
		return 0, false
	}
	fromSeq, ok = gi.members[user]
	return fromSeq, ok
}

// count returns the number of current members of group (0 if unknown).
func (m *members) count(group string) int {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	gi, err := m.cache.get(ctx, group)
	if err != nil {
		return 0
	}
	return len(gi.members)
}

// forget drops what is remembered of group: the next question reads it.
func (m *members) forget(group string) { m.cache.forget(group) }
