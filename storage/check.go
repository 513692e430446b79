package storage

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
)

// What every store can hold. The stores check their inputs against these
// limits before they write, so that a value one store would accept and
// another refuse never gets in: a row stored in SQLite must copy to Postgres
// (parley migrate-store), and a bad value refused up front fails its own
// request, never a batch of other users' writes.

// MaxKeyBytes is the longest key (a user or group id, an inbox, a cid, an
// MQTT client id, a push token) a store accepts, in bytes. A Postgres btree
// index row cannot exceed 2,704 bytes (a third of a page), and keys share
// index rows in pairs ((sender, cid), (client_id, inbox)): 1 KiB each leaves
// room for both.
const MaxKeyBytes = 1024

// CheckText returns an error wrapping ErrInvalid when s cannot be stored as
// text in every store: Postgres text holds neither a NUL (SQLSTATE 22021)
// nor invalid UTF-8. what names the value in the error.
func CheckText(what, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s holds a NUL character: %w", what, ErrInvalid)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8: %w", what, ErrInvalid)
	}
	return nil
}

// CheckKey is CheckText for a value that is indexed, which must also be at
// most MaxKeyBytes long.
func CheckKey(what, s string) error {
	if len(s) > MaxKeyBytes {
		return fmt.Errorf("%s is %d bytes, more than %d: %w", what, len(s), MaxKeyBytes, ErrInvalid)
	}
	return CheckText(what, s)
}

// Check reports whether every store can hold m, with an error wrapping
// ErrInvalid when it cannot. Data is bytes and holds anything.
func (m *Message) Check() error {
	for _, k := range []struct{ what, v string }{
		{"sender", m.From}, {"recipient", m.To}, {"cid", m.Cid}, {"conversation", m.Conv},
	} {
		if err := CheckKey(k.what, k.v); err != nil {
			return err
		}
	}
	if err := CheckText("type", m.Type); err != nil {
		return err
	}
	for _, in := range m.Inboxes {
		if err := CheckKey("inbox", in); err != nil {
			return err
		}
	}
	for _, in := range m.Owed {
		if err := CheckKey("inbox", in); err != nil {
			return err
		}
	}
	return nil
}

// Check reports whether every store can hold u.
func (u User) Check() error {
	if err := CheckKey("user id", u.ID); err != nil {
		return err
	}
	if err := CheckText("name", u.Name); err != nil {
		return err
	}
	return CheckText("password hash", u.PasswordHash)
}

// Check reports whether every store can hold c.
func (c Cursor) Check() error {
	if err := CheckKey("client id", c.ClientID); err != nil {
		return err
	}
	return CheckKey("inbox", c.Inbox)
}

// Check reports whether every store can hold d.
func (d PushDevice) Check() error {
	if err := CheckKey("push token", d.Token); err != nil {
		return err
	}
	if err := CheckKey("user", d.User); err != nil {
		return err
	}
	for _, k := range []struct{ what, v string }{{"platform", d.Platform}, {"environment", d.Environment}, {"device", d.Device}} {
		if err := CheckText(k.what, k.v); err != nil {
			return err
		}
	}
	return nil
}

// Check reports whether every store can hold a: a user id that is a key and
// a message id that is a UUID in its canonical form (36 characters), the
// form message ids are stored in.
func (a PushAck) Check() error {
	if err := CheckKey("user", a.User); err != nil {
		return err
	}
	if len(a.ID) != 36 || uuid.Validate(a.ID) != nil {
		return fmt.Errorf("message id %q is not a UUID: %w", a.ID, ErrInvalid)
	}
	return nil
}

// ValidPushAcks splits acks into those every store can hold and the number
// it dropped, with the first reason for dropping one (nil if none).
func ValidPushAcks(acks []PushAck) (valid []PushAck, dropped int, why error) {
	first := slices.IndexFunc(acks, func(a PushAck) bool { return a.Check() != nil })
	if first < 0 {
		return acks, 0, nil // the usual case: no copy
	}
	valid = slices.Clone(acks[:first])
	for _, a := range acks[first:] {
		if err := a.Check(); err != nil {
			dropped++
			if why == nil {
				why = err
			}
			continue
		}
		valid = append(valid, a)
	}
	return valid, dropped, why
}

// DroppedPushAcks is the error of a RecordPushAcks that dropped n
// acknowledgements of total, for reason why (which wraps ErrInvalid), and
// recorded the others.
func DroppedPushAcks(n, total int, why error) error {
	return fmt.Errorf("dropped %d of %d acknowledgements, the others are recorded: %w", n, total, why)
}

// ValidCursors splits cs into the cursors every store can hold and the
// number it dropped, with the first reason for dropping one (nil if none).
func ValidCursors(cs []Cursor) (valid []Cursor, dropped int, why error) {
	first := -1
	for i, c := range cs {
		if c.Check() != nil {
			first = i
			break
		}
	}
	if first < 0 {
		return cs, 0, nil // the usual case: no copy
	}
	valid = slices.Clone(cs[:first])
	for _, c := range cs[first:] {
		if err := c.Check(); err != nil {
			dropped++
			if why == nil {
				why = err
			}
			continue
		}
		valid = append(valid, c)
	}
	return valid, dropped, why
}

// DroppedCursors is the error of a SaveCursors that dropped n cursors of
// total, for reason why (which wraps ErrInvalid), and saved the others.
func DroppedCursors(n, total int, why error) error {
	return fmt.Errorf("dropped %d of %d cursors, the others are saved: %w", n, total, why)
}
