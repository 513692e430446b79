package storage

import (
	"context"
	"time"
)

// Presence privacy settings: who may see a user's presence.
const (
	PrivacyEveryone = "everyone" // any signed-in user (the default)
	PrivacyContacts = "contacts" // the users in the user's own contact list (Consent)
	PrivacyNobody   = "nobody"
)

// ValidPrivacy reports whether p is one of the Privacy* settings.
func ValidPrivacy(p string) bool {
	return p == PrivacyEveryone || p == PrivacyContacts || p == PrivacyNobody
}

// Presence stores what outlives a connection of presence: when each user was
// last seen, and who may see it.
type Presence interface {
	// SetLastSeen records when users were last seen, in one write: the
	// presence hook gathers them and writes them about once a second, and
	// refreshes those still connected every minute or so, which one write per
	// user would turn into a stream of transactions. A user's last-seen time
	// never moves back; unknown users are skipped.
	SetLastSeen(ctx context.Context, seen map[string]time.Time) error
	// LastSeen returns the last-seen times of those users that have one.
	LastSeen(ctx context.Context, users []string) (map[string]time.Time, error)
	// SetPresencePrivacy sets a user's privacy (Privacy*), or ErrNotFound.
	SetPresencePrivacy(ctx context.Context, user, privacy string) error
	// PresencePrivacy returns a user's privacy (PrivacyEveryone by default),
	// or ErrNotFound for an unknown or deleted user (whose presence nobody
	// may see).
	PresencePrivacy(ctx context.Context, user string) (string, error)
}
