// Package storage defines what Parley keeps durably: users and their tokens,
// inboxes of stamped entries with gapless sequence numbers, and per-device
// delivery cursors. The Store interface is the seam between the MQTT hooks and
// HTTP API above and the implementations below it (storage/postgres, and the
// embedded store); storetest holds the contract suite every implementation
// must pass.
package storage

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/parleychat/parley/protocol"
)

// Errors returned by every Store implementation. Implementations wrap their
// driver's errors so that callers can test for these with errors.Is.
var (
	// ErrNotFound: the user, token or inbox does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a user with that id already exists.
	ErrExists = errors.New("already exists")
	// ErrUnavailable: the database could not be reached or failed; the
	// operation may be retried later. Nothing was stored.
	ErrUnavailable = errors.New("store unavailable")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store closed")
	// ErrInvalid: the input cannot be stored, in this store or in any other
	// (see CheckKey and CheckText): a NUL or invalid UTF-8 in a text, a key
	// longer than MaxKeyBytes, a value the database refuses as such
	// (Postgres SQLSTATE class 22 or 54). Retrying cannot help: it is the
	// caller's bad request, not the server's failure. It fails only the
	// request that carried it, never the others committed with it.
	ErrInvalid = errors.New("invalid input")
)

// Store is everything Parley needs from durable storage. It is wide on
// purpose: it is the one seam between Parley and its databases, and the
// contract suite in storetest pins down its behaviour for every implementation.
type Store interface {
	Users
	Messages
	Cursors
	Groups
	Reads
	Presence
	Consent
	Push
	Deliveries
	Maintenance
	// Ping reports whether the database is reachable.
	Ping(ctx context.Context) error
	// Close releases the store. Pending appends are finished first.
	Close() error
}

// User is a registered account.
type User struct {
	ID           string
	Name         string
	PasswordHash string // encoded hash (bcrypt); "" for a deleted account
	CreatedAt    time.Time
	// DeletedAt is when the account was deleted (DeleteUser), zero for a
	// live one. A deleted account's row stays as a tombstone, named
	// DeletedUserName, so that its id is never given to someone else and
	// the messages it left in other users' inboxes stay attributed to it.
	DeletedAt time.Time
}

// Deleted reports whether u is the tombstone of a deleted account.
func (u User) Deleted() bool { return !u.DeletedAt.IsZero() }

// DeletedUserName is the name DeleteUser gives a deleted account.
const DeletedUserName = "Deleted user"

// Token is an access token as the store keeps it: the SHA-256 of its
// secret, never the secret, with its owner, lifetime and last use.
type Token struct {
	Hash      []byte
	User      string
	CreatedAt time.Time
	// ExpiresAt slides with use (TouchTokens).
	ExpiresAt time.Time
	// LastUsedAt is the last use TouchTokens recorded; CreatedAt until then.
	LastUsedAt time.Time
	// LastAddr, LastAgent and LastClient describe that use: the client's
	// address, its HTTP User-Agent (HTTP) or MQTT client id (MQTT); ""
	// when unknown.
	LastAddr, LastAgent, LastClient string
}

// TokenUse is one use of a token, for TouchTokens.
type TokenUse struct {
	Hash                []byte
	At                  time.Time
	Addr, Agent, Client string
}

// Check reports whether every store can hold u's texts.
func (u TokenUse) Check() error {
	for _, k := range []struct{ what, v string }{{"address", u.Addr}, {"user agent", u.Agent}, {"client id", u.Client}} {
		if err := CheckKey(k.what, k.v); err != nil {
			return err
		}
	}
	return nil
}

// Users stores accounts and their access tokens.
type Users interface {
	// CreateUser stores a new user and creates its inbox. It returns ErrExists
	// when the id is taken.
	CreateUser(ctx context.Context, u User) error
	// GetUser returns ErrNotFound for an unknown id, and a deleted
	// account's tombstone (User.Deleted).
	GetUser(ctx context.Context, id string) (User, error)
	// UsersLike returns, sorted, the ids (deleted accounts' included) whose
	// protocol.IDSkeleton is skeleton: the ids a display name with that
	// auth.Skeleton reads as.
	UsersLike(ctx context.Context, skeleton string) ([]string, error)
	// CreateToken stores an access token, identified by the hash of its
	// secret; its last use is its creation. ErrNotFound when the user does
	// not exist or is deleted.
	CreateToken(ctx context.Context, hash []byte, user string, expires time.Time) error
	// TokenUser returns the user of an unexpired token, or ErrNotFound.
	TokenUser(ctx context.Context, hash []byte, now time.Time) (string, error)
	// DeleteToken revokes a token, and deletes the push tokens its session
	// registered (PushDevice.Session) in the same transaction. Deleting an
	// unknown token is not an error.
	DeleteToken(ctx context.Context, hash []byte) error

	// UserTokens returns the user's tokens unexpired at now, the most
	// recently used first; none (no error) for an unknown user.
	UserTokens(ctx context.Context, user string, now time.Time) ([]Token, error)
	// TouchTokens records uses of tokens: each token's last use becomes
	// the use (address, agent, client id included) and its expiry slides
	// to the earlier of At+idle and its creation+max. A token that is
	// unknown, expired at At, or whose recorded use is later than At is
	// left alone (a use never revives a token nor moves its last use
	// back). A use that cannot be stored (TokenUse.Check) fails the call,
	// wrapping ErrInvalid, before anything is written.
	TouchTokens(ctx context.Context, uses []TokenUse, idle, max time.Duration) error
	// ValidTokens returns those of hashes that name tokens unexpired at
	// now, in no particular order.
	ValidTokens(ctx context.Context, hashes [][]byte, now time.Time) ([][]byte, error)
	// DeleteUserTokens revokes every token of user but keep (nil: all of
	// them), with the push tokens their sessions registered, and returns
	// the hashes of those it deleted.
	DeleteUserTokens(ctx context.Context, user string, keep []byte) ([][]byte, error)
	// SetPassword replaces a user's password hash and, in the same
	// transaction, revokes every token of the user but keep (nil: all of
	// them), with the push tokens their sessions registered, returning the
	// hashes of those it deleted. ErrNotFound for an
	// unknown or deleted user.
	SetPassword(ctx context.Context, user, passwordHash string, keep []byte) ([][]byte, error)
	// DeleteUser deletes an account and what the store keeps of it, in one
	// transaction: its tokens (whose hashes it returns), its inbox and the
	// entries in it, its push tokens, settings, mutes and queued pushes,
	// the delivery cursors of its devices, its read markers, its conversation partners (the contacts
	// table), its block list, contact list and consent settings and its place
	// in others' lists, its presence, its idempotency keys; its current group memberships end as
	// a removal at each group's last seq. The user's row stays as a
	// tombstone (User.Deleted, DeletedUserName, no password) so that the
	// id is never reused and the messages it sent, which stay in other
	// users' and groups' inboxes, stay attributed to it. A deleted user
	// cannot get a token (CreateToken), be added to a group (AddMember,
	// CreateGroup: ErrNotFound) or receive a message (its inbox is gone:
	// Append's ErrNotFound). ErrNotFound for an unknown or deleted user.
	// Deliveries and push acknowledgements naming the user are left to
	// Prune: they hold ids only, and age out within days.
	DeleteUser(ctx context.Context, user string, at time.Time) ([][]byte, error)
}

// Message is a message or event to append to one or more inboxes in one
// atomic step: each copy gets the next sequence number of its inbox.
type Message struct {
	ID      string   // message id (UUID), the same in every copy
	From    string   // sender user id
	To      string   // recipient user or group id
	TS      int64    // Unix milliseconds
	Type    string   // protocol.TypeMsg, TypeReceipt, TypeError, …
	Cid     string   // the sender's id for idempotent retries; "" for none
	Data    []byte   // see protocol.Entry.Data
	Inboxes []string // where to store a copy, e.g. {"u/bob", "u/alice"}
	// Conv names the conversation of the copies in users' inboxes when the
	// default (see ConvOf) does not: "g/{group}" for a group's receipts.
	Conv string
	// Owed names inboxes on other shards of a sharded store that are owed
	// a copy: the sender's copy of a DM whose sender lives on another shard
	// than its recipient. They are not stored here; the transaction that
	// stores the copies of Inboxes records them as outbox rows, which a
	// relay turns into those copies (ClaimOwed, docs/sharding.md). Postgres
	// only.
	Owed []string
	// Copy marks a copy relayed from another shard's outbox (OwedCopy). Its
	// ID is the message's: a copy of that ID already in the inbox is a
	// repeat, answered as a duplicate, whatever the cid. It is not keyed on
	// its cid, queues no push, and makes its sender's row of the
	// conversation list, which the recipient's shard could not.
	Copy bool
}

// ConvOf returns the conversation of m's copy in inbox: "" in a group's
// inbox; in a user's inbox, m.Conv if set, else the other user of the
// message (the recipient for the sender's own copy).
func ConvOf(m *Message, inbox string) string {
	if !strings.HasPrefix(inbox, protocol.UserPrefix) {
		return ""
	}
	if m.Conv != "" {
		return m.Conv
	}
	if protocol.UserInbox(m.From) == inbox {
		return m.To
	}
	return m.From
}

// Idempotent reports whether m is deduplicated: a message (TypeMsg) with a
// cid, whose idempotency key is (From, DedupInbox, Cid).
func (m *Message) Idempotent() bool { return m.Cid != "" && m.Type == protocol.TypeMsg && !m.Copy }

// DedupInbox returns the inbox that scopes m's idempotency key: the first of
// m.Inboxes, where m is addressed (the recipient's u/{user}, the group's
// g/{group}; never the sender's own copy of a direct message). A cid reused
// for another recipient is another message; "" when m has no inboxes.
func (m *Message) DedupInbox() string {
	if len(m.Inboxes) == 0 {
		return ""
	}
	return m.Inboxes[0]
}

// ContactRows returns the rows of users' conversation lists (user, peer) a
// stored message makes: for a direct message between two users, the
// recipient's, and the sender's unless its copy is owed to another shard
// (Owed); for a relayed copy (Copy), its sender's. (The recipient's store
// writes the one, the sender's the other.)
func ContactRows(m *Message) [][2]string {
	if m.Copy {
		if m.Type == protocol.TypeMsg && m.From != m.To {
			return [][2]string{{m.From, m.To}}
		}
		return nil
	}
	a, b, ok := ContactPair(m)
	if !ok {
		return nil
	}
	if slices.Contains(m.Owed, protocol.UserInbox(a)) {
		return [][2]string{{b, a}}
	}
	return [][2]string{{a, b}, {b, a}}
}

// ContactPair reports the two users a message makes contacts of: a direct
// message between two different users (stored in the recipient's inbox).
func ContactPair(m *Message) (a, b string, ok bool) {
	if m.Type != protocol.TypeMsg || m.From == m.To || len(m.Inboxes) == 0 || m.Inboxes[0] != protocol.UserInbox(m.To) {
		return "", "", false
	}
	return m.From, m.To, true
}

// OwedCopy is an outbox row of a sharded store: a copy of a message owed
// to an inbox on another shard (Message.Owed). Message has the copy's one
// inbox and Copy set: appending it to the inbox's shard is the relay.
type OwedCopy struct {
	Seq     int64 // the row's place in its shard's outbox
	Message Message
}

// SortOwed orders copies by their place in the outbox.
func SortOwed(cs []OwedCopy) {
	slices.SortFunc(cs, func(a, b OwedCopy) int { return cmp.Compare(a.Seq, b.Seq) })
}

// Messages stores inboxes of entries.
type Messages interface {
	// Append stores one copy of m in each of m.Inboxes in one transaction and
	// returns the stored entries, in the order of m.Inboxes. The sequence
	// numbers of an inbox are gapless: 1, 2, 3, …
	//
	// When m.Cid is set on a message of type protocol.TypeMsg (other types
	// carry a cid only as a reference) and the sender already stored a
	// message with that cid for the same inbox (the idempotency key is
	// (sender, inbox, cid), the inbox being m.DedupInbox()), nothing new is
	// stored: Append returns the entries stored the first time and dup is
	// true. The same cid sent to another recipient or group is a new
	// message. Concurrent appends of one key, in one group commit or not,
	// store it once. A key is kept until Prune drops it (Retention.Dedup).
	//
	// Append returns ErrNotFound when one of the inboxes does not exist (and
	// stores nothing), ErrInvalid when m cannot be stored (see
	// Message.Check; nothing is stored, and appends committed alongside it
	// are not affected), ErrUnavailable when the database failed (and stored
	// nothing). It returns only once the entries are durable.
	Append(ctx context.Context, m Message) (entries []protocol.Entry, dup bool, err error)
	// Read returns up to limit entries of inbox with seq > after, in seq order.
	Read(ctx context.Context, inbox string, after int64, limit int) ([]protocol.Entry, error)
	// ReadBefore returns up to limit entries of inbox with seq < before, in seq
	// order (the newest ones just below before).
	ReadBefore(ctx context.Context, inbox string, before int64, limit int) ([]protocol.Entry, error)
	// LastSeq returns the seq of the newest entry of inbox (0 when it is empty),
	// or ErrNotFound when the inbox does not exist.
	LastSeq(ctx context.Context, inbox string) (int64, error)
}

// Cursor is how far one device (an MQTT client id) has acknowledged an inbox.
type Cursor struct {
	ClientID string
	Inbox    string
	Seq      int64
}

// Cursors stores delivery cursors of devices with persistent sessions.
type Cursors interface {
	// GetCursor returns ErrNotFound when the device has no cursor for inbox.
	GetCursor(ctx context.Context, clientID, inbox string) (int64, error)
	// SaveCursors stores cursors; a cursor never moves backwards. A cursor
	// that cannot be stored (see Cursor.Check) is dropped and the others
	// are saved: the error then wraps ErrInvalid and says how many were
	// dropped, and retrying the same cursors cannot help.
	SaveCursors(ctx context.Context, cs []Cursor) error
}

// Retention says what Prune deletes. A zero age keeps that kind for ever.
type Retention struct {
	// Now is the time the ages count back from. Zero: time.Now().
	Now time.Time
	// Tokens deletes access tokens that expired before Now, and the push
	// tokens their sessions registered.
	Tokens bool
	// Dedup is how long an idempotency key (sender, inbox, cid) is kept,
	// counted from its message's TS: a retry older than that is stored
	// again as a new message. Keep it well above the longest a client
	// retries.
	Dedup time.Duration
	// Cursors deletes every cursor of a client id none of whose cursors was
	// saved for that long: a device gone for good. Keep it above the
	// longest session expiry: a session that acknowledged nothing for that
	// long loses its cursors too.
	Cursors time.Duration
	// PushAcks is how long an acknowledgement recorded for push
	// (RecordPushAcks) is kept, counted from its At. Those of finished
	// push jobs go with the jobs; what is left this long is one written
	// as its job was being deleted, or one of a job stuck in the queue
	// that long, whose push would no longer be news. Keep it well above
	// the push grace period plus the push lease: a day, say.
	PushAcks time.Duration
	// Deliveries is how long a delivery (RecordDeliveries) is kept,
	// counted from its At. A message acknowledged again after that is a
	// first again (a repeated delivered receipt, harmless) and its count
	// starts over. Keep it above the time in which a message's recipients'
	// devices usually all come back for it: a few days, say.
	Deliveries time.Duration
}

// Pruned counts the rows Prune deleted.
type Pruned struct {
	Tokens, DedupKeys, Cursors, PushAcks, Deliveries int64
}

// Maintenance deletes what a store no longer needs. The store never prunes
// on its own: its owner calls Prune periodically.
type Maintenance interface {
	// Prune deletes what r says has expired. It deletes in small steps,
	// each its own transaction, so that appends go on meanwhile; an error
	// leaves the steps before it done (Pruned counts them), and running it
	// again carries on. Pruning again at once deletes nothing more.
	Prune(ctx context.Context, r Retention) (Pruned, error)
}
