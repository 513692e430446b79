// Package consent provides what each user allows others: the users it
// blocked, its own contact list (who "contacts" means in its settings) and
// who may add it to groups. The MQTT hooks ask it, on every direct message,
// whether one user blocked another, so it keeps users' block lists in
// memory for a while; changes made through this node apply at once, and in
// a cluster each node forgets a user's list when told of its change
// (Service.Forget), or within Config.TTL when it missed that.
package consent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Errors of the Service, beside the store's.
var (
	// ErrSelf: a user cannot block itself or list itself as a contact.
	ErrSelf = errors.New("not yourself")
	// ErrInvalidUser: not a user id.
	ErrInvalidUser = errors.New("invalid user id")
	// ErrInvalidSetting: not a GroupAdds* value.
	ErrInvalidSetting = errors.New("group_adds must be everyone, contacts or nobody")
)

// Store is what consent needs from storage.
type Store interface {
	Block(ctx context.Context, user, peer string, at time.Time) error
	Unblock(ctx context.Context, user, peer string) error
	Blocks(ctx context.Context, user string) ([]storage.Peer, error)
	PutContact(ctx context.Context, user, contact string, at time.Time) error
	DeleteContact(ctx context.Context, user, contact string) error
	Contacts(ctx context.Context, user string) ([]storage.Peer, error)
	SetGroupAdds(ctx context.Context, user, setting string) error
	GroupAdds(ctx context.Context, user string) (string, error)
	Stances(ctx context.Context, users []string, other string) (map[string]storage.Stance, error)
}

// Config configures a Service.
type Config struct {
	// TTL is how long a user's block list is kept in memory. In a cluster
	// it bounds how long a node that missed a change applies the old list.
	// Default 30s.
	TTL time.Duration
	// Changed is called after each change, with the users whose view of
	// each other it changed (the user first): the node ends the presence
	// subscriptions that no longer hold and, in a cluster, tells the other
	// nodes. Optional.
	Changed func(users ...string)
}

// Service answers and changes users' consent.
type Service struct {
	cfg   Config
	store Store
	now   func() time.Time

	mu     sync.Mutex // guards blocks
	blocks map[string]*blockList
}

type blockList struct {
	peers  map[string]bool
	loaded time.Time
}

// maxCached bounds the block lists kept in memory: past it, all are
// forgotten and read again as needed.
const maxCached = 200_000

// New returns a Service.
func New(cfg Config, store Store) *Service {
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	return &Service{cfg: cfg, store: store, now: time.Now, blocks: map[string]*blockList{}}
}

func (s *Service) changed(users ...string) {
	for _, u := range users {
		s.Forget(u)
	}
	if s.cfg.Changed != nil {
		s.cfg.Changed(users...)
	}
}

// Forget drops what the Service keeps of user's block list, so that the
// next check reads it again: for a change made on another node.
func (s *Service) Forget(user string) {
	s.mu.Lock()
	delete(s.blocks, user)
	s.mu.Unlock()
}

func checkPeer(user, peer string) error {
	if !protocol.ValidID(peer) {
		return fmt.Errorf("%w: %q", ErrInvalidUser, peer)
	}
	if peer == user {
		return ErrSelf
	}
	return nil
}

// Block adds peer to user's block list. ErrSelf, ErrInvalidUser, or the
// store's ErrNotFound for an unknown peer.
func (s *Service) Block(ctx context.Context, user, peer string) error {
	if err := checkPeer(user, peer); err != nil {
		return err
	}
	if err := s.store.Block(ctx, user, peer, s.now()); err != nil {
		return err
	}
	s.changed(user, peer)
	return nil
}

// Unblock removes peer from user's block list.
func (s *Service) Unblock(ctx context.Context, user, peer string) error {
	if err := checkPeer(user, peer); err != nil {
		return err
	}
	if err := s.store.Unblock(ctx, user, peer); err != nil {
		return err
	}
	s.changed(user, peer)
	return nil
}

// Blocks returns user's block list, oldest first.
func (s *Service) Blocks(ctx context.Context, user string) ([]storage.Peer, error) {
	return s.store.Blocks(ctx, user)
}

// PutContact adds contact to user's contact list.
func (s *Service) PutContact(ctx context.Context, user, contact string) error {
	if err := checkPeer(user, contact); err != nil {
		return err
	}
	if err := s.store.PutContact(ctx, user, contact, s.now()); err != nil {
		return err
	}
	s.changed(user)
	return nil
}

// DeleteContact removes contact from user's contact list.
func (s *Service) DeleteContact(ctx context.Context, user, contact string) error {
	if err := checkPeer(user, contact); err != nil {
		return err
	}
	if err := s.store.DeleteContact(ctx, user, contact); err != nil {
		return err
	}
	s.changed(user)
	return nil
}

// Contacts returns user's contact list, oldest first.
func (s *Service) Contacts(ctx context.Context, user string) ([]storage.Peer, error) {
	return s.store.Contacts(ctx, user)
}

// SetGroupAdds sets who may add user to groups.
func (s *Service) SetGroupAdds(ctx context.Context, user, setting string) error {
	if !storage.ValidGroupAdds(setting) {
		return ErrInvalidSetting
	}
	return s.store.SetGroupAdds(ctx, user, setting)
}

// GroupAdds returns who may add user to groups.
func (s *Service) GroupAdds(ctx context.Context, user string) (string, error) {
	return s.store.GroupAdds(ctx, user)
}

// Blocked reports whether owner blocked other, from owner's block list in
// memory when it is recent enough.
func (s *Service) Blocked(ctx context.Context, owner, other string) (bool, error) {
	now := s.now()
	s.mu.Lock()
	bl := s.blocks[owner]
	s.mu.Unlock()
	if bl == nil || now.Sub(bl.loaded) >= s.cfg.TTL {
		ps, err := s.store.Blocks(ctx, owner)
		if err != nil {
			return false, err
		}
		bl = &blockList{peers: make(map[string]bool, len(ps)), loaded: now}
		for _, p := range ps {
			bl.peers[p.User] = true
		}
		s.mu.Lock()
		if len(s.blocks) >= maxCached {
			clear(s.blocks)
		}
		s.blocks[owner] = bl
		s.mu.Unlock()
	}
	return bl.peers[other], nil
}

// RefusedAdds returns, sorted, those of users who do not let adder add them
// to a group: those who blocked adder, take adds only from their contacts
// and do not list adder, or take none. Unknown users are not among them
// (adding them fails on its own). adder itself always may.
func (s *Service) RefusedAdds(ctx context.Context, adder string, users []string) ([]string, error) {
	others := make([]string, 0, len(users))
	for _, u := range users {
		if u != adder {
			others = append(others, u)
		}
	}
	st, err := s.store.Stances(ctx, others, adder)
	if err != nil {
		return nil, err
	}
	var refused []string
	for u, x := range st {
		if !x.AcceptsGroupAdd() {
			refused = append(refused, u)
		}
	}
	slices.Sort(refused)
	return refused, nil
}
