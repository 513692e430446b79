package storage

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/parleychat/parley/protocol"
)

// ErrPushTokenTaken: PutPushDevice refused a push token that another user
// registered, from a session that is still valid.
var ErrPushTokenTaken = errors.New("push token is registered to another user")

// PushDevice is one push token registered by a user's app.
type PushDevice struct {
	Token       string // the provider's device token; unique across users
	User        string
	Platform    string // "apns" or "fcm"
	Environment string // APNs "production" or "sandbox"; "" when unknown or FCM
	Device      string // the app's name for the installation, e.g. "alice/phone"
	// Session is the hash of the access token (Token.Hash) of the session
	// that registered the push token: the token is deleted with it. nil:
	// bound to no session (registered before sessions were bound), the
	// push token then stays with User for as long as the account exists.
	Session   []byte
	UpdatedAt time.Time
}

// PushProfile is what the push service needs to know about one recipient.
type PushProfile struct {
	Preview bool                 // show message text (default true)
	Mutes   map[string]time.Time // conversation → muted until; zero time: for ever
	Devices []PushDevice
}

// Muted reports whether conversation conv is muted at now.
func (p PushProfile) Muted(conv string, now time.Time) bool {
	until, ok := p.Mutes[conv]
	return ok && (until.IsZero() || now.Before(until))
}

// PushJob is a stored message waiting for its push notifications: one per
// message of type msg, written in the transaction that stores the message,
// deleted once its recipients have been notified (or skipped).
type PushJob struct {
	ID    string // the message id
	Inbox string // the recipient's copy: "u/{to}" for a DM, "g/{group}"
	Seq   int64  // its seq in Inbox
	From  string
	To    string
	TS    int64 // Unix milliseconds
	Data  []byte
	// Acked holds the users a device of whom acknowledged the message
	// (RecordPushAcks, on any node) before the job was claimed, in no
	// particular order: they get no push for it. Set by ClaimPushJobs.
	Acked []string
}

// PushAck says that a device of User acknowledged message ID live (its
// PUBACK), so that User gets no push for it: the fact that lets the node
// claiming the message's push job know about an acknowledgement seen by
// another node.
type PushAck struct {
	User string
	ID   string    // the message id, a UUID in its canonical form
	At   time.Time // when; zero: when it is recorded
}

// Push stores push tokens, push settings and mutes, and the queue of push
// jobs. The jobs themselves are written by Append when the store is
// configured to queue them.
type Push interface {
	// PutPushDevice registers or refreshes a push token for d.User, bound
	// to the session d.Session, in one transaction:
	//
	//   - A token d.User registered is refreshed (its platform,
	//     environment, device, session and UpdatedAt replaced), whichever
	//     session registers it again.
	//   - A token another user registered moves to d.User only when that
	//     registration lost its proof of ownership: its session expired
	//     (a session that was revoked took its push tokens with it, below)
	//     or its user was deleted. Otherwise nothing changes and the error
	//     wraps ErrPushTokenTaken. A token bound to no session (Session
	//     nil) stays with its user while the account exists.
	//   - Past maxDevices tokens of d.User (0 or less: no cap), the least
	//     recently updated others are deleted, so that the token just
	//     registered always stays.
	//
	// ErrNotFound for an unknown or deleted user, or a d.Session that is
	// not one of d.User's stored access tokens.
	//
	// A token's registration goes with its session: revoking an access
	// token (DeleteToken, DeleteUserTokens, SetPassword, DeleteUser) or
	// pruning an expired one deletes the push tokens it registered in the
	// same transaction.
	PutPushDevice(ctx context.Context, d PushDevice, maxDevices int) error
	// PushDevices returns a user's tokens, least recently updated first.
	PushDevices(ctx context.Context, user string) ([]PushDevice, error)
	// DeletePushDevice removes a user's token, or returns ErrNotFound.
	DeletePushDevice(ctx context.Context, user, token string) error
	// RemovePushToken deletes a token the provider called invalid, unless it
	// was registered again after before (zero: delete regardless). It
	// reports whether it deleted it.
	RemovePushToken(ctx context.Context, token string, before time.Time) (bool, error)
	// SetPushPreview sets whether a user's notifications show message text.
	SetPushPreview(ctx context.Context, user string, on bool) error
	// SetPushMute mutes conversation conv ("u/{peer}" or "g/{group}") of
	// user until until (zero: for ever).
	SetPushMute(ctx context.Context, user, conv string, until time.Time) error
	// DeletePushMute unmutes a conversation; unmuting one that is not muted
	// is not an error.
	DeletePushMute(ctx context.Context, user, conv string) error
	// PushProfile returns a user's push settings, mutes and tokens.
	PushProfile(ctx context.Context, user string) (PushProfile, error)

	// ClaimPushJobs leases, until leaseUntil, up to about limit jobs whose
	// message was sent at or before dueTS (Unix ms) together with every
	// other unleased job of the same inboxes (so that a burst is
	// coalesced), and returns them oldest first, each with the users who
	// acknowledged its message (PushJob.Acked), read in the same statement.
	// Jobs leased by another claimer are skipped; a lease that ran out (a
	// crashed node) may be claimed again.
	ClaimPushJobs(ctx context.Context, dueTS int64, now, leaseUntil time.Time, limit int) ([]PushJob, error)
	// DeletePushJobs removes finished jobs and the acknowledgements
	// recorded for them.
	DeletePushJobs(ctx context.Context, ids []string) error
	// RecordPushAcks records, in one write, that devices acknowledged
	// messages, for the claims of their push jobs (PushJob.Acked) on every
	// node. An acknowledgement is kept only while its message's job is
	// queued: one of a message that has no job (any more) has no push to
	// cancel and is not stored, and DeletePushJobs deletes the others with
	// their jobs (Prune, Retention.PushAcks, deletes any left behind).
	// Recording one again is not an error. An acknowledgement that no store
	// can hold (see PushAck.Check) is dropped and the others are recorded:
	// the error then wraps ErrInvalid, and retrying cannot help.
	RecordPushAcks(ctx context.Context, acks []PushAck) error
	// CountPushJobs returns the number of queued jobs and the ts (Unix ms)
	// of the oldest, 0 if none: for metrics.
	CountPushJobs(ctx context.Context) (n int64, oldestTS int64, err error)
}

// SortPushJobs orders jobs by ts, then inbox and seq.
func SortPushJobs(js []PushJob) {
	slices.SortFunc(js, func(a, b PushJob) int {
		return cmp.Or(cmp.Compare(a.TS, b.TS), cmp.Compare(a.Inbox, b.Inbox), cmp.Compare(a.Seq, b.Seq))
	})
}

// WantsPush reports whether storing m queues a push job: a chat message
// (type msg) to someone else. Typing, receipts, read markers and notices
// never push.
func WantsPush(m *Message) bool {
	return m.Type == protocol.TypeMsg && m.From != m.To && len(m.Inboxes) > 0 && !m.Copy
}
