package groups

import (
	"context"
	"errors"
	"fmt"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// LeaveAll ends every current membership of user as a removal by the user
// itself: each group gets a member_removed entry, the membership ends at
// it (the user's view of the group stops there), and the change applies at
// once to connected devices. It is for an account being deleted, so the
// owner leaves too (unlike RemoveMember): its group goes on without one
// (members still chat, rename and leave; nobody adds or removes others).
// No notice goes to the user's own inbox, which is about to go.
func (s *Service) LeaveAll(ctx context.Context, user string) error {
	gs, err := s.store.UserGroups(ctx, user)
	if err != nil {
		return fmt.Errorf("leave groups: %w", err)
	}
	for _, g := range gs {
		e, err := s.event(ctx, g.ID, protocol.TypeMemberRemoved, user, user, "")
		if err != nil {
			return fmt.Errorf("leave group %s: %w", g.ID, err)
		}
		if err := s.store.RemoveMember(ctx, g.ID, user, e.Seq); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("leave group %s: %w", g.ID, err)
		}
		s.broker.MembershipChanged(g.ID, user)
	}
	return nil
}
