package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Events are changes every node must apply at once: they invalidate what
// nodes hold in memory (group members, who may see whose presence). Each is
// published by the node where the change was made, after the store has it,
// and applied by the others; a node that misses one (NATS was down) applies
// it within the cache's lifetime anyway (groups: 5 s), or when the
// subscription is next checked.
const (
	// EventMembership: a group's members changed; Removed, if set, must
	// stop receiving the group at once.
	EventMembership = "membership"
	// EventPrivacy: a user's presence privacy changed.
	EventPrivacy = "privacy"
	// EventConsent: users' block or contact lists changed: nodes read
	// their block lists again and end the presence subscriptions that no
	// longer hold.
	EventConsent = "consent"
	// EventTokensRevoked: access tokens were revoked (a session ended, a
	// password changed): the connections authenticated with them end at
	// once, and no node accepts them from its cache of verified tokens.
	// A node that misses it ends them at its next check of its
	// connections' tokens (auth.session_check).
	EventTokensRevoked = "tokens_revoked"
	// EventUserDeleted: an account was deleted: every connection of the
	// user ends, whatever its token.
	EventUserDeleted = "user_deleted"
)

// Membership is EventMembership's body.
type Membership struct {
	Group   string `json:"group"`
	Removed string `json:"removed,omitempty"`
}

// Privacy is EventPrivacy's body.
type Privacy struct {
	User string `json:"user"`
}

// Consent is EventConsent's body: the users whose lists changed, or who
// entered or left one.
type Consent struct {
	Users []string `json:"users"`
}

// Revoked is the body of EventTokensRevoked and EventUserDeleted: the
// user (which may be unknown, "", for EventTokensRevoked) and the SHA-256
// of each revoked token (never a token itself).
type Revoked struct {
	User   string   `json:"user,omitempty"`
	Tokens [][]byte `json:"tokens,omitempty"`
}

func (b *Bus) eventSubject(kind string) string { return eventSubject(b.cfg.Prefix, kind) }

func eventSubject(prefix, kind string) string { return prefix + ".event." + kind }

// Publish tells the other nodes of an event. It does not block; an error
// (NATS unreachable) is logged and counted.
func (b *Bus) Publish(kind string, body any) {
	data, err := json.Marshal(body)
	if err == nil {
		err = b.nc.Publish(b.eventSubject(kind), data)
	}
	if err != nil {
		b.m.publishErrors.Inc()
		b.log.Warn("cluster bus: event not published; other nodes apply it when their caches expire",
			"event", kind, "error", err)
	}
}

// Handle runs fn for each event of kind published by another node, one at
// a time, in the order published. Call it before Start.
func (b *Bus) Handle(kind string, fn func(data []byte)) error {
	_, err := b.nc.Subscribe(b.eventSubject(kind), func(msg *nats.Msg) { fn(msg.Data) })
	if err != nil {
		return fmt.Errorf("cluster: handle %s events: %w", kind, err)
	}
	return nil
}

// membershipSeq marks an announcement on a group's inbox subject that is a
// membership change, not an entry.
const membershipSeq = -1

// AnnounceMembership tells the other nodes that a group's members changed
// (removed, if set, must stop receiving it at once). It is announced twice:
// on the group's inbox subject, where the nodes with subscribers of the
// group receive it in order with the group's entries (an entry stored
// after the change is never fanned out to the removed member before the
// change is applied), and as an event to every node, whose cached members
// of the group are then read again.
func (b *Bus) AnnounceMembership(group, removed string) {
	body, err := json.Marshal(Membership{Group: group, Removed: removed})
	if err != nil {
		return
	}
	data := make([]byte, header+len(body))
	binary.BigEndian.PutUint64(data, uint64(time.Now().UnixNano()))
	seq := int64(membershipSeq)
	binary.BigEndian.PutUint64(data[8:], uint64(seq))
	copy(data[header:], body)
	if err := b.nc.Publish(b.subject("g/"+group), data); err != nil {
		b.m.publishErrors.Inc()
	}
	b.Publish(EventMembership, Membership{Group: group, Removed: removed})
}

func (b *Bus) membershipChanged(body []byte) {
	var m Membership
	if err := json.Unmarshal(body, &m); err != nil || m.Group == "" {
		b.log.Warn("cluster bus: malformed membership change", "body", string(body))
		return
	}
	if r := b.recv.Load(); r != nil {
		r.MembershipChanged(m.Group, m.Removed)
	}
}

// PublishEvent tells the nodes of the cluster at url (NATS servers, comma
// separated) of an event, from outside the cluster: parley users, whose
// changes to the store the running nodes must apply. It connects, publishes
// and flushes within ctx.
func PublishEvent(ctx context.Context, url, kind string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("cluster: %s event: %w", kind, err)
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	nc, err := nats.Connect(url, nats.Name("parley command"), nats.Timeout(timeout))
	if err != nil {
		return fmt.Errorf("cluster: connect to %s: %w", url, err)
	}
	defer nc.Close()
	var cfg Config
	cfg.setDefaults()
	if err := nc.Publish(eventSubject(cfg.Prefix, kind), data); err != nil {
		return fmt.Errorf("cluster: publish %s event: %w", kind, err)
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("cluster: publish %s event: %w", kind, err)
	}
	return nil
}
