package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/cluster"
	"github.com/parleychat/parley/hooks"
)

// clusterGroups applies a membership change on this node and tells the
// others (groups.Broker).
type clusterGroups struct {
	*hooks.Inbox
	bus *cluster.Bus
}

func (g clusterGroups) MembershipChanged(group, removedUser string) {
	g.Inbox.MembershipChanged(group, removedUser)
	g.bus.AnnounceMembership(group, removedUser)
}

// clusterPresence applies a privacy change on this node and tells the
// others (api.Presence).
type clusterPresence struct {
	*hooks.Presence
	bus *cluster.Bus
}

func (p clusterPresence) SetPrivacy(ctx context.Context, user, privacy string) error {
	if err := p.Presence.SetPrivacy(ctx, user, privacy); err != nil {
		return err
	}
	p.bus.Publish(cluster.EventPrivacy, cluster.Privacy{User: user})
	return nil
}

// handleEvents applies the other nodes' events here.
func (s *Server) handleEvents() error {
	if err := s.bus.Handle(cluster.EventMembership, func(data []byte) {
		var m cluster.Membership
		if err := json.Unmarshal(data, &m); err != nil || m.Group == "" {
			s.log.Warn("malformed membership event", "data", string(data))
			return
		}
		s.inbox.MembershipChanged(m.Group, m.Removed)
	}); err != nil {
		return err
	}
	if err := s.bus.Handle(cluster.EventPrivacy, func(data []byte) {
		var p cluster.Privacy
		if err := json.Unmarshal(data, &p); err != nil || p.User == "" {
			s.log.Warn("malformed privacy event", "data", string(data))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.presence.PrivacyChanged(ctx, p.User)
	}); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	if err := s.bus.Handle(cluster.EventConsent, func(data []byte) {
		var c cluster.Consent
		if err := json.Unmarshal(data, &c); err != nil || len(c.Users) == 0 {
			s.log.Warn("malformed consent event", "data", string(data))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, u := range c.Users {
			s.consent.Forget(u)
			s.presence.PrivacyChanged(ctx, u)
		}
	}); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	// Revocations made on another node: its tokens leave this node's
	// cache, their connections here end.
	for _, kind := range []string{cluster.EventTokensRevoked, cluster.EventUserDeleted} {
		deleted := kind == cluster.EventUserDeleted
		if err := s.bus.Handle(kind, func(data []byte) {
			var r cluster.Revoked
			if err := json.Unmarshal(data, &r); err != nil || (deleted && r.User == "") {
				s.log.Warn("malformed revocation event", "event", kind, "data", string(data))
				return
			}
			rev := auth.Revocation{User: r.User, Tokens: r.Tokens, Deleted: deleted}
			s.sessions.accounts.Forget(rev.Tokens)
			if deleted {
				s.sessions.accounts.ForgetUser(rev.User)
			}
			s.sessions.end(rev)
		}); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	return nil
}

// clusterView is GET /v1/cluster's answer.
type clusterView struct {
	Clustered bool               `json:"clustered"`
	Node      string             `json:"node"` // the node answering
	Bus       busView            `json:"bus"`
	Nodes     []cluster.NodeInfo `json:"nodes"`
}

type busView struct {
	Connected bool   `json:"connected"`
	Server    string `json:"server,omitempty"`
	Watched   int    `json:"watched_filters"`
}

func (s *Server) clusterView() any {
	connected, server, watched := s.bus.Status()
	return clusterView{Clustered: true, Node: s.bus.Node(), Bus: busView{connected, server, watched}, Nodes: s.bus.Nodes()}
}
