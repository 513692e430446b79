// Package groups provides group chats: creating them, their membership and
// names, with every change recorded as an entry in the group's inbox so that
// each member's devices see it in order.
package groups

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Errors of the Service. The HTTP API maps each to a status code.
var (
	ErrForbidden      = errors.New("not allowed")
	ErrTooManyMembers = errors.New("too many members")
	ErrInvalidName    = errors.New("group name must have 1 to 128 visible characters")
	ErrInvalidMember  = errors.New("member must be an existing user id")
	// ErrNotAccepted: a user's consent settings do not let the caller add
	// it to a group (it blocked the caller, or takes adds only from its
	// contacts, or from nobody). The error names the users, not why.
	ErrNotAccepted = errors.New("these users do not accept group invitations from you")
)

// Consent says who lets whom add them to groups (consent.Service).
type Consent interface {
	// RefusedAdds returns those of users who do not let adder add them.
	RefusedAdds(ctx context.Context, adder string, users []string) ([]string, error)
}

// Store is what groups need from storage.
type Store interface {
	CreateGroup(ctx context.Context, g storage.Group) error
	GetGroup(ctx context.Context, id string) (storage.Group, error)
	UserGroups(ctx context.Context, user string) ([]storage.Group, error)
	GetMembership(ctx context.Context, group, user string) (storage.Membership, error)
	AddMember(ctx context.Context, group, user, role string) error
	RemoveMember(ctx context.Context, group, user string, atSeq int64) error
	RenameGroup(ctx context.Context, id, name string) error
	SetGroupHistory(ctx context.Context, id, history string) error
	Append(ctx context.Context, m storage.Message) ([]protocol.Entry, bool, error)
}

// Broker is what groups need from the node: delivering stored entries live,
// and applying a membership change at once to connected devices.
type Broker interface {
	Deliver(e protocol.Entry)
	MembershipChanged(group, removedUser string)
}

// Config configures groups.
type Config struct {
	// MaxMembers is the largest group. Default 1024.
	MaxMembers int
	// Consent refuses adds its users do not allow. nil: anyone may add
	// anyone.
	Consent Consent
	// Limits bound how fast each user creates groups and adds members, on
	// this node.
	Limits Limits
}

// Service manages groups.
type Service struct {
	cfg    Config
	store  Store
	broker Broker
	now    func() time.Time
	limits *limiter
}

// New returns a Service.
func New(cfg Config, store Store, broker Broker) *Service {
	if cfg.MaxMembers <= 0 {
		cfg.MaxMembers = 1024
	}
	return &Service{cfg: cfg, store: store, broker: broker, now: time.Now, limits: newLimiter(cfg.Limits)}
}

// MaxMembers returns the member limit.
func (s *Service) MaxMembers() int { return s.cfg.MaxMembers }

// newID returns a random group id valid as a topic level.
func newID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	for i := range b {
		b[i] = alphabet[b[i]&31]
	}
	return string(b[:])
}

// Create makes a group owned by owner with the given other members, and
// its history ("join", the default when "", or "full": what members added
// later read of what came before them).
func (s *Service) Create(ctx context.Context, owner, name string, members []string, hist string) (storage.Group, error) {
	name, ok := protocol.CleanName(name) // no bidi controls, invisible or control characters
	if !ok {
		return storage.Group{}, ErrInvalidName
	}
	hist, err := history(hist)
	if err != nil {
		return storage.Group{}, err
	}
	ms := []storage.Member{{User: owner, Role: storage.RoleOwner}}
	seen := map[string]bool{owner: true}
	for _, m := range members {
		if !protocol.ValidID(m) {
			return storage.Group{}, fmt.Errorf("%w: %q", ErrInvalidMember, m)
		}
		if !seen[m] {
			seen[m] = true
			ms = append(ms, storage.Member{User: m, Role: storage.RoleMember})
		}
	}
	if len(ms) > s.cfg.MaxMembers {
		return storage.Group{}, fmt.Errorf("%w: at most %d", ErrTooManyMembers, s.cfg.MaxMembers)
	}
	if err := s.limits.take(owner, true, len(ms)-1, s.now()); err != nil {
		return storage.Group{}, err
	}
	if err := s.accepted(ctx, owner, members); err != nil {
		return storage.Group{}, err
	}
	g := storage.Group{ID: newID(), Name: name, Owner: owner, History: hist, Members: ms}
	if err := s.store.CreateGroup(ctx, g); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return storage.Group{}, fmt.Errorf("%w: %w", ErrInvalidMember, err)
		}
		return storage.Group{}, err
	}
	if _, err := s.event(ctx, g.ID, protocol.TypeGroupCreated, owner, "", name); err != nil {
		return storage.Group{}, err
	}
	for _, m := range ms[1:] {
		s.notice(ctx, m.User, protocol.TypeMemberAdded, owner, g.ID, name)
	}
	return s.store.GetGroup(ctx, g.ID)
}

// Get returns a group to one of its current members.
func (s *Service) Get(ctx context.Context, caller, id string) (storage.Group, error) {
	if _, err := s.member(ctx, id, caller); err != nil {
		return storage.Group{}, err
	}
	return s.store.GetGroup(ctx, id)
}

// ForUser returns the groups a user belongs to.
func (s *Service) ForUser(ctx context.Context, user string) ([]storage.Group, error) {
	return s.store.UserGroups(ctx, user)
}

// member returns the caller's current membership; a non-member is told the
// group does not exist.
func (s *Service) member(ctx context.Context, group, user string) (storage.Membership, error) {
	m, err := s.store.GetMembership(ctx, group, user)
	if err != nil {
		return storage.Membership{}, err
	}
	if !m.Current {
		return storage.Membership{}, fmt.Errorf("group %s: %w", group, storage.ErrNotFound)
	}
	return m, nil
}

// AddMember adds user to the group: the owner and the group's admins may.
func (s *Service) AddMember(ctx context.Context, caller, id, user string) (storage.Group, error) {
	m, err := s.member(ctx, id, caller)
	if err != nil {
		return storage.Group{}, err
	}
	if m.Role != storage.RoleOwner && m.Role != storage.RoleAdmin {
		return storage.Group{}, fmt.Errorf("%w: only the owner and admins add members", ErrForbidden)
	}
	if !protocol.ValidID(user) {
		return storage.Group{}, fmt.Errorf("%w: %q", ErrInvalidMember, user)
	}
	if um, err := s.store.GetMembership(ctx, id, user); err == nil && um.Current {
		return storage.Group{}, fmt.Errorf("add member: %w", storage.ErrExists)
	}
	g, err := s.store.GetGroup(ctx, id)
	if err != nil {
		return storage.Group{}, err
	}
	if len(g.Members) >= s.cfg.MaxMembers {
		return storage.Group{}, fmt.Errorf("%w: the group has %d members, the limit", ErrTooManyMembers, len(g.Members))
	}
	if err := s.limits.take(caller, false, 1, s.now()); err != nil {
		return storage.Group{}, err
	}
	if err := s.accepted(ctx, caller, []string{user}); err != nil {
		return storage.Group{}, err
	}
	if err := s.store.AddMember(ctx, id, user, storage.RoleMember); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return storage.Group{}, fmt.Errorf("%w: %w", ErrInvalidMember, err)
		}
		return storage.Group{}, err
	}
	s.broker.MembershipChanged(id, "")
	if _, err := s.event(ctx, id, protocol.TypeMemberAdded, caller, user, ""); err != nil {
		return storage.Group{}, err
	}
	s.notice(ctx, user, protocol.TypeMemberAdded, caller, id, g.Name)
	return s.store.GetGroup(ctx, id)
}

// accepted returns ErrNotAccepted, naming them, when some of users do not
// let adder add them to a group.
func (s *Service) accepted(ctx context.Context, adder string, users []string) error {
	if s.cfg.Consent == nil {
		return nil
	}
	refused, err := s.cfg.Consent.RefusedAdds(ctx, adder, users)
	if err != nil {
		return fmt.Errorf("group consent: %w", err)
	}
	if len(refused) > 0 {
		return fmt.Errorf("%w: %s", ErrNotAccepted, strings.Join(refused, ", "))
	}
	return nil
}

// RemoveMember removes user from the group: the owner may remove anyone but
// itself, and any member may remove itself (leave).
func (s *Service) RemoveMember(ctx context.Context, caller, id, user string) error {
	m, err := s.member(ctx, id, caller)
	if err != nil {
		return err
	}
	switch {
	case caller == user && m.Role == storage.RoleOwner:
		return fmt.Errorf("%w: the owner cannot leave its group", ErrForbidden)
	case caller != user && m.Role != storage.RoleOwner:
		return fmt.Errorf("%w: only the owner removes other members", ErrForbidden)
	}
	if _, err := s.member(ctx, id, user); err != nil {
		return err
	}
	// The removal is an entry of the group's inbox; the member's view of
	// the group ends with it.
	e, err := s.event(ctx, id, protocol.TypeMemberRemoved, caller, user, "")
	if err != nil {
		return err
	}
	if err := s.store.RemoveMember(ctx, id, user, e.Seq); err != nil {
		return err
	}
	s.broker.MembershipChanged(id, user)
	if g, err := s.store.GetGroup(ctx, id); err == nil {
		s.notice(ctx, user, protocol.TypeMemberRemoved, caller, id, g.Name)
	}
	return nil
}

// Rename renames the group; any current member may.
func (s *Service) Rename(ctx context.Context, caller, id, name string) (storage.Group, error) {
	name, ok := protocol.CleanName(name) // no bidi controls, invisible or control characters
	if !ok {
		return storage.Group{}, ErrInvalidName
	}
	if _, err := s.member(ctx, id, caller); err != nil {
		return storage.Group{}, err
	}
	if err := s.store.RenameGroup(ctx, id, name); err != nil {
		return storage.Group{}, err
	}
	if _, err := s.event(ctx, id, protocol.TypeRenamed, caller, "", name); err != nil {
		return storage.Group{}, err
	}
	return s.store.GetGroup(ctx, id)
}

// event stores a group event in the group's inbox and delivers it.
func (s *Service) event(ctx context.Context, group, typ, by, user, name string) (protocol.Entry, error) {
	return s.appendEvent(ctx, group, typ, by, protocol.GroupEventData(user, by, name))
}

// appendEvent stores a group event with its data in the group's inbox and
// delivers it.
func (s *Service) appendEvent(ctx context.Context, group, typ, by string, data json.RawMessage) (protocol.Entry, error) {
	es, _, err := s.store.Append(ctx, storage.Message{
		ID: uuid.Must(uuid.NewV7()).String(), From: by, To: group, TS: s.now().UnixMilli(), Type: typ,
		Data: data, Inboxes: []string{protocol.GroupInbox(group)},
	})
	if err != nil {
		return protocol.Entry{}, fmt.Errorf("group event: %w", err)
	}
	s.broker.Deliver(es[0])
	return es[0], nil
}

// notice tells a user, in its own inbox, that it joined or left a group, so
// that its devices learn of the change without polling. A notice that
// cannot be stored is not fatal: the group lists still show the change.
func (s *Service) notice(ctx context.Context, user, typ, by, group, name string) {
	inbox := protocol.GroupInbox(group)
	es, _, err := s.store.Append(ctx, storage.Message{
		ID: uuid.Must(uuid.NewV7()).String(), From: by, To: user, TS: s.now().UnixMilli(), Type: typ,
		Data: protocol.GroupNoticeData(user, by, inbox, name), Inboxes: []string{protocol.UserInbox(user)}, Conv: inbox,
	})
	if err == nil {
		s.broker.Deliver(es[0])
	}
}

// Members returns the ids of a group's members.
func Members(g storage.Group) []string {
	out := make([]string, len(g.Members))
	for i, m := range g.Members {
		out[i] = m.User
	}
	slices.Sort(out)
	return out
}
