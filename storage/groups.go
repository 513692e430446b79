package storage

import (
	"context"
	"fmt"
	"time"
)

// Group roles.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// Group histories: what a member added to a group reads of the entries
// stored before it joined.
const (
	// HistoryJoin: a member reads from its own member_added entry on (the
	// group's seq when it was added); the founding members from the start.
	HistoryJoin = "join"
	// HistoryFull: every member reads the whole history.
	HistoryFull = "full"
)

// CheckHistory returns an error wrapping ErrInvalid unless h is HistoryJoin
// or HistoryFull.
func CheckHistory(h string) error {
	if h != HistoryJoin && h != HistoryFull {
		return fmt.Errorf("group history %q is not %q or %q: %w", h, HistoryJoin, HistoryFull, ErrInvalid)
	}
	return nil
}

// Group is a group chat. Its inbox is g/{ID}.
type Group struct {
	ID        string
	Name      string
	Owner     string
	History   string // HistoryJoin or HistoryFull ("" is HistoryJoin in CreateGroup)
	CreatedAt time.Time
	Members   []Member // current members, by user id
	LastSeq   int64    // the newest seq of the group's inbox
}

// Member is a user's membership of a group.
type Member struct {
	User    string
	Role    string
	AddedAt time.Time
	// FromSeq is the first seq of the group's inbox the member reads: the
	// seq of its member_added entry (the inbox's last seq + 1 when it was
	// added), 0 for the founding members, and 0 for everyone while the
	// group's History is HistoryFull. Ignored by CreateGroup.
	FromSeq int64
}

// Membership is what a user may see of a group: a current member sees the
// entries from FromSeq on; a former member those from FromSeq up to
// RemovedSeq.
type Membership struct {
	Role       string
	Current    bool
	RemovedSeq int64 // 0 for current members
	FromSeq    int64 // as Member.FromSeq: 0 when the group's History is HistoryFull
}

// Groups stores groups and their members. Membership events (member_added,
// …) are entries in the group's inbox, appended through Messages.Append.
type Groups interface {
	// CreateGroup stores a group with its members (the owner among them, with
	// RoleOwner, every one reading from the start: FromSeq 0) and its History
	// ("" for HistoryJoin), and creates its inbox. ErrExists when the id is
	// taken, ErrNotFound when a member does not exist, ErrInvalid for an
	// unknown History.
	CreateGroup(ctx context.Context, g Group) error
	// GetGroup returns a group with its current members, or ErrNotFound.
	GetGroup(ctx context.Context, id string) (Group, error)
	// UserGroups returns the groups a user currently belongs to, with members.
	UserGroups(ctx context.Context, user string) ([]Group, error)
	// GetMembership returns a user's membership of a group, current or
	// former, or ErrNotFound if the user never belonged to it.
	GetMembership(ctx context.Context, group, user string) (Membership, error)
	// AddMember makes user a current member (again), reading from the
	// group inbox's last seq + 1 as it stands when the member is added (in
	// the same statement): its own member_added entry, appended next, and
	// everything after. ErrExists if it is one, ErrNotFound if the group or
	// the user does not exist.
	AddMember(ctx context.Context, group, user, role string) error
	// RemoveMember ends a current membership at the group's seq atSeq.
	// ErrNotFound if user is not a current member.
	RemoveMember(ctx context.Context, group, user string, atSeq int64) error
	// RenameGroup renames a group, or returns ErrNotFound.
	RenameGroup(ctx context.Context, id, name string) error
	// SetGroupHistory sets a group's History (HistoryJoin or HistoryFull,
	// else ErrInvalid), or returns ErrNotFound. The members' recorded
	// FromSeq stay: HistoryFull only reads them as 0.
	SetGroupHistory(ctx context.Context, id, history string) error
}
