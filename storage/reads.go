package storage

import (
	"context"

	"github.com/parleychat/parley/protocol"
)

// ReadCursor is how far a user has read an inbox, or one conversation of
// its own inbox (Conv "" covers the whole inbox).
type ReadCursor struct {
	User  string
	Inbox string
	Conv  string
	Seq   int64
}

// Conversation is one line of a user's chat list: a direct conversation
// with another user (Peer) or a group (Group), with its newest message or
// event, how many messages from others are unread, and the read cursor.
type Conversation struct {
	Peer    string // for a direct conversation
	Group   string // for a group
	Last    *protocol.Entry
	Unread  int
	ReadSeq int64
}

// Reads stores read cursors and answers unread counts.
type Reads interface {
	// SetReadCursor moves a read cursor forward and returns where it was
	// (0 for a new one). A cursor never moves back: setting a lower seq
	// returns the current one and changes nothing.
	SetReadCursor(ctx context.Context, c ReadCursor) (prev int64, err error)
	// GetReadCursor returns a read cursor, 0 if there is none.
	GetReadCursor(ctx context.Context, user, inbox, conv string) (int64, error)
	// Unread lists the entries of type msg from others in inbox (and
	// conversation conv, when inbox is the reader's own and conv is not "")
	// with after < seq ≤ upTo, oldest first, at most limit.
	Unread(ctx context.Context, reader, inbox, conv string, after, upTo int64, limit int) ([]protocol.Entry, error)
	// Conversations returns a user's direct conversations and groups, most
	// recent first.
	Conversations(ctx context.Context, user string) ([]Conversation, error)
	// CountReaders returns how many users other than except have read inbox
	// up to seq or further.
	CountReaders(ctx context.Context, inbox string, seq int64, except string) (int, error)
}
