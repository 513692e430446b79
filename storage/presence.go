package storage

import (
	"context"
	"time"
)

// Presence privacy settings: who may see a user's presence.
const (
	PrivacyEveryone = "everyone" // any signed-in user (the default)
	PrivacyContacts = "contacts" // users who share a conversation: a DM either way, or a group
	PrivacyNobody   = "nobody"
)

// Presence stores what outlives a connection of presence: when each user was
// last seen, and who may see it.
type Presence interface {
	// SetLastSeen records that user was last seen at t (never moving back).
	SetLastSeen(ctx context.Context, user string, t time.Time) error
	// LastSeen returns the last-seen times of those users that have one.
	LastSeen(ctx context.Context, users []string) (map[string]time.Time, error)
	// SetPresencePrivacy sets a user's privacy (Privacy*), or ErrNotFound.
	SetPresencePrivacy(ctx context.Context, user, privacy string) error
	// PresencePrivacy returns a user's privacy (PrivacyEveryone by default),
	// or ErrNotFound for an unknown user.
	PresencePrivacy(ctx context.Context, user string) (string, error)
	// SharesConversation reports whether a and b have exchanged a direct
	// message (the contacts table) or are current members of one group.
	SharesConversation(ctx context.Context, a, b string) (bool, error)
}
