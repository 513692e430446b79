package storage

import (
	"context"
	"time"
)

// Group roles.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// Group is a group chat. Its inbox is g/{ID}.
type Group struct {
	ID        string
	Name      string
	Owner     string
	CreatedAt time.Time
	Members   []Member // current members, by user id
	LastSeq   int64    // the newest seq of the group's inbox
}

// Member is a user's membership of a group.
type Member struct {
	User    string
	Role    string
	AddedAt time.Time
}

// Membership is what a user may see of a group: a current member sees it
// all; a former member the entries up to RemovedSeq.
type Membership struct {
	Role       string
	Current    bool
	RemovedSeq int64 // 0 for current members
}

// Groups stores groups and their members. Membership events (member_added,
// …) are entries in the group's inbox, appended through Messages.Append.
type Groups interface {
	// CreateGroup stores a group with its members (the owner among them, with
	// RoleOwner) and creates its inbox. ErrExists when the id is taken,
	// ErrNotFound when a member does not exist.
	CreateGroup(ctx context.Context, g Group) error
	// GetGroup returns a group with its current members, or ErrNotFound.
	GetGroup(ctx context.Context, id string) (Group, error)
	// UserGroups returns the groups a user currently belongs to, with members.
	UserGroups(ctx context.Context, user string) ([]Group, error)
	// GetMembership returns a user's membership of a group, current or
	// former, or ErrNotFound if the user never belonged to it.
	GetMembership(ctx context.Context, group, user string) (Membership, error)
	// AddMember makes user a current member (again). ErrExists if it is one,
	// ErrNotFound if the group or the user does not exist.
	AddMember(ctx context.Context, group, user, role string) error
	// RemoveMember ends a current membership at the group's seq atSeq.
	// ErrNotFound if user is not a current member.
	RemoveMember(ctx context.Context, group, user string, atSeq int64) error
	// RenameGroup renames a group, or returns ErrNotFound.
	RenameGroup(ctx context.Context, id, name string) error
}
