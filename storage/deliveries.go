package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/protocol"
)

// Delivery says that a device of User has message ID: it acknowledged the
// message (its PUBACK) on whichever node it is connected to. Delivered
// receipts are made of these facts rather than of one node's memory, so that
// a user whose devices are on several nodes makes one receipt per message,
// and a group message's receipts count the members who have it wherever
// they are connected.
type Delivery struct {
	ID   string // the message id, a UUID in its canonical, lower-case form
	User string // who has it: the recipient of a DM, a member of a group
	// Inbox is where the message is stored: "u/{User}" for a DM,
	// "g/{group}" for a group message. Only group messages are counted
	// (RecordDeliveries' counts); it is not stored.
	Inbox string
	At    time.Time // when; zero: when it is recorded
}

// Counted reports whether d is of a group message, whose deliveries
// RecordDeliveries counts.
func (d Delivery) Counted() bool { return strings.HasPrefix(d.Inbox, protocol.GroupPrefix) }

// Deliveries records who has which message.
type Deliveries interface {
	// RecordDeliveries records, in one write, that users have messages, and
	// returns
	//
	//   - firsts: the deliveries of ds recorded for the first time, in the
	//     order of ds. A (message, user) pair is a first once, whichever
	//     call on whichever node records it first, however many times ds
	//     and other calls repeat it: a receipt is due for the firsts only.
	//   - counts: for each message of a group (Delivery.Counted) among ds,
	//     by id, how many users are recorded as having it. The counts are
	//     read after the write is committed, so that of two calls recording
	//     deliveries of one message at the same time, at least one (the
	//     one that reads later) counts both.
	//
	// Recording a delivery again is not an error. A call that fails may
	// nevertheless have recorded some of ds (its write committed, the answer
	// was lost): retried, they are not firsts any more. A delivery that no
	// store can hold (see Delivery.Check) is dropped and the others are
	// recorded and answered for: the error then wraps ErrInvalid, and
	// retrying cannot help. Prune deletes old deliveries
	// (Retention.Deliveries): a message delivered again after that is a
	// first again, and its count starts over.
	RecordDeliveries(ctx context.Context, ds []Delivery) (firsts []Delivery, counts map[string]int, err error)
}

// Check reports whether every store can hold d: a user id that is a key and
// a message id that is a UUID in its canonical, lower-case form (the form
// message ids are stored in; SQLite keeps text as it is given).
func (d Delivery) Check() error {
	if err := CheckKey("user", d.User); err != nil {
		return err
	}
	if len(d.ID) != 36 || uuid.Validate(d.ID) != nil || strings.ToLower(d.ID) != d.ID {
		return fmt.Errorf("message id %q is not a lower-case UUID: %w", d.ID, ErrInvalid)
	}
	return nil
}

// DeliveryKey is what identifies a delivery: a message and a user.
type DeliveryKey struct{ ID, User string }

// Key returns d's key.
func (d Delivery) Key() DeliveryKey { return DeliveryKey{d.ID, d.User} }

// UniqueDeliveries returns the deliveries of ds that every store can hold,
// each key once (its first occurrence), in the order of ds, with the number
// of invalid ones dropped and the first reason for dropping one (nil if
// none).
func UniqueDeliveries(ds []Delivery) (unique []Delivery, dropped int, why error) {
	seen := make(map[DeliveryKey]struct{}, len(ds))
	unique = make([]Delivery, 0, len(ds))
	for _, d := range ds {
		if err := d.Check(); err != nil {
			dropped++
			if why == nil {
				why = err
			}
			continue
		}
		if _, ok := seen[d.Key()]; ok {
			continue
		}
		seen[d.Key()] = struct{}{}
		unique = append(unique, d)
	}
	return unique, dropped, why
}

// CountedMessages returns the ids of the group messages among ds (see
// Delivery.Counted), each once.
func CountedMessages(ds []Delivery) []string {
	var ids []string
	seen := map[string]struct{}{}
	for _, d := range ds {
		if _, ok := seen[d.ID]; ok || !d.Counted() {
			continue
		}
		seen[d.ID] = struct{}{}
		ids = append(ids, d.ID)
	}
	return ids
}

// DroppedDeliveries is the error of a RecordDeliveries that dropped n
// deliveries of total, for reason why (which wraps ErrInvalid), and recorded
// the others.
func DroppedDeliveries(n, total int, why error) error {
	return fmt.Errorf("dropped %d of %d deliveries, the others are recorded: %w", n, total, why)
}
