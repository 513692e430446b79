package groups

import (
	"context"
	"errors"
	"fmt"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// ErrInvalidHistory: a group history other than "join" and "full".
var ErrInvalidHistory = errors.New(`group history must be "join" or "full"`)

// history returns the group history h names: "" is storage.HistoryJoin, a
// member added later reads from its join; storage.HistoryFull, it reads
// everything.
func history(h string) (string, error) {
	switch h {
	case "", storage.HistoryJoin:
		return storage.HistoryJoin, nil
	case storage.HistoryFull:
		return storage.HistoryFull, nil
	}
	return "", ErrInvalidHistory
}

// SetHistory sets what members read of the history from before they
// joined (every member's reads change at once, the past ones' included:
// "full" shows everyone everything; "join" limits each again to what came
// from its own join): the owner and the group's admins may. The change is
// an entry of the group's inbox (history_changed). Setting the history the
// group has changes nothing, and stores no entry.
func (s *Service) SetHistory(ctx context.Context, caller, id, h string) (storage.Group, error) {
	h, err := history(h)
	if err != nil {
		return storage.Group{}, err
	}
	m, err := s.member(ctx, id, caller)
	if err != nil {
		return storage.Group{}, err
	}
	if m.Role != storage.RoleOwner && m.Role != storage.RoleAdmin {
		return storage.Group{}, fmt.Errorf("%w: only the owner and admins set the group's history", ErrForbidden)
	}
	g, err := s.store.GetGroup(ctx, id)
	if err != nil || g.History == h {
		return g, err
	}
	if err := s.store.SetGroupHistory(ctx, id, h); err != nil {
		return storage.Group{}, err
	}
	// The members' FromSeq, which the nodes cache, read differently now.
	s.broker.MembershipChanged(id, "")
	if _, err := s.appendEvent(ctx, id, protocol.TypeHistoryChanged, caller, protocol.GroupHistoryData(caller, h)); err != nil {
		return storage.Group{}, err
	}
	return s.store.GetGroup(ctx, id)
}
