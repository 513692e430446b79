package storage

import (
	"context"
	"time"
)

// Group-add settings: who may add a user to a group.
const (
	GroupAddsEveryone = "everyone" // any user the user has not blocked (the default)
	GroupAddsContacts = "contacts" // the users in the user's contact list
	GroupAddsNobody   = "nobody"   // nobody: the user creates or is added only by itself
)

// ValidGroupAdds reports whether s is one of the GroupAdds* settings.
func ValidGroupAdds(s string) bool {
	return s == GroupAddsEveryone || s == GroupAddsContacts || s == GroupAddsNobody
}

// Peer is one user of another's block list or contact list.
type Peer struct {
	User string
	At   time.Time // when it was added to the list
}

// Stance is what one user's settings say about another user: whether the
// user blocked it, whether it is in the user's contact list, and who the
// user lets add it to groups.
type Stance struct {
	Blocked   bool
	Contact   bool
	GroupAdds string
}

// AcceptsGroupAdd reports whether the stance lets its other user add the
// user to a group.
func (s Stance) AcceptsGroupAdd() bool {
	switch {
	case s.Blocked:
		return false
	case s.GroupAdds == GroupAddsContacts:
		return s.Contact
	case s.GroupAdds == GroupAddsNobody:
		return false
	}
	return true
}

// Consent stores what each user allows others: the users it blocked, its
// own contact list (who "contacts" means in its settings), and who may add
// it to groups. Lists name live users only: DeleteUser removes a deleted
// user's lists and its place in others'.
type Consent interface {
	// Block adds peer to user's block list (again: not an error, its time
	// stays). ErrNotFound when either user is unknown or deleted.
	Block(ctx context.Context, user, peer string, at time.Time) error
	// Unblock removes peer from user's block list; one not there is not an
	// error.
	Unblock(ctx context.Context, user, peer string) error
	// Blocks returns user's block list, oldest first; none for an unknown
	// user.
	Blocks(ctx context.Context, user string) ([]Peer, error)
	// PutContact adds contact to user's contact list (again: not an error).
	// ErrNotFound when either user is unknown or deleted.
	PutContact(ctx context.Context, user, contact string, at time.Time) error
	// DeleteContact removes contact from user's list; one not there is not
	// an error.
	DeleteContact(ctx context.Context, user, contact string) error
	// Contacts returns user's contact list, oldest first; none for an
	// unknown user.
	Contacts(ctx context.Context, user string) ([]Peer, error)
	// IsContact reports whether contact is in user's contact list.
	IsContact(ctx context.Context, user, contact string) (bool, error)
	// SetGroupAdds sets who may add user to groups (GroupAdds*), or
	// ErrNotFound for an unknown or deleted user.
	SetGroupAdds(ctx context.Context, user, setting string) error
	// GroupAdds returns user's setting (GroupAddsEveryone by default), or
	// ErrNotFound for an unknown user.
	GroupAdds(ctx context.Context, user string) (string, error)
	// Stances returns, in one read, the stance of each of users towards
	// other. Unknown users are left out.
	Stances(ctx context.Context, users []string, other string) (map[string]Stance, error)
}
