package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/parleychat/parley/storage"
)

// testPrune: Prune deletes expired tokens (and the push tokens their
// sessions registered), idempotency keys of old messages and every cursor
// of a client id whose newest cursor is old, and keeps the rest.
func testPrune(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	now := time.Now()
	if err := s.CreateToken(ctx(t), []byte("expired"), "alice", now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx(t), []byte("valid"), "alice", now.Add(72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Push tokens go with the session that registered them.
	for tok, session := range map[string]string{"push-expired": "expired", "push-valid": "valid"} {
		d := storage.PushDevice{Token: tok, User: "alice", Platform: "fcm", Session: []byte(session)}
		if err := s.PutPushDevice(ctx(t), d, 0); err != nil {
			t.Fatal(err)
		}
	}
	old := dm("alice", "bob", "old")
	old.TS = now.Add(-48 * time.Hour).UnixMilli()
	for _, m := range []storage.Message{old, dm("alice", "bob", "new"), dm("alice", "bob", "")} {
		if _, _, err := s.Append(ctx(t), m); err != nil {
			t.Fatal(err)
		}
	}

	// Cursors saved before seen are old, those saved after it are not.
	save := func(cs ...storage.Cursor) {
		t.Helper()
		if err := s.SaveCursors(ctx(t), cs); err != nil {
			t.Fatal(err)
		}
	}
	save(storage.Cursor{ClientID: "gone", Inbox: "u/alice", Seq: 1}, storage.Cursor{ClientID: "gone", Inbox: "u/bob", Seq: 1},
		storage.Cursor{ClientID: "mixed", Inbox: "u/alice", Seq: 1})
	seen := time.Now()
	for !time.Now().After(seen) { // the stores keep microseconds: let one pass
	}
	save(storage.Cursor{ClientID: "mixed", Inbox: "u/bob", Seq: 2}, storage.Cursor{ClientID: "here", Inbox: "u/bob", Seq: 3})

	// Prune a day after seen: cursors a day old are those saved before it.
	// Idempotency keys are kept for a day before the test's start: the old
	// message (two days old) loses its key, the new one keeps it.
	const day = 24 * time.Hour
	at := seen.Add(day)
	r := storage.Retention{Now: at, Tokens: true, Dedup: at.Sub(now) + day, Cursors: day}
	p, err := s.Prune(ctx(t), r)
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if p != (storage.Pruned{Tokens: 1, DedupKeys: 1, Cursors: 2}) {
		t.Errorf("Prune deleted %+v, want 1 token, 1 idempotency key, 2 cursors", p)
	}

	if _, err := s.TokenUser(ctx(t), []byte("valid"), at); err != nil {
		t.Errorf("the valid token: %v", err)
	}
	if ds, err := s.PushDevices(ctx(t), "alice"); err != nil || len(ds) != 1 || ds[0].Token != "push-valid" {
		t.Errorf("push tokens after Prune = %+v, %v; want only the valid session's", ds, err)
	}
	// The old key is gone: the same cid is a new message. The new one stays.
	if _, dup, err := s.Append(ctx(t), dm("alice", "bob", "old")); err != nil || dup {
		t.Errorf("Append of the pruned cid: dup=%v err=%v, want a new message", dup, err)
	}
	if _, dup, err := s.Append(ctx(t), dm("alice", "bob", "new")); err != nil || !dup {
		t.Errorf("Append of the kept cid: dup=%v err=%v, want a duplicate", dup, err)
	}
	for _, c := range []storage.Cursor{{ClientID: "gone", Inbox: "u/alice"}, {ClientID: "gone", Inbox: "u/bob"}} {
		if _, err := s.GetCursor(ctx(t), c.ClientID, c.Inbox); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetCursor(%s, %s) after Prune: %v, want ErrNotFound", c.ClientID, c.Inbox, err)
		}
	}
	for _, c := range []storage.Cursor{{ClientID: "mixed", Inbox: "u/alice", Seq: 1}, {ClientID: "mixed", Inbox: "u/bob", Seq: 2}, {ClientID: "here", Inbox: "u/bob", Seq: 3}} {
		if seq, err := s.GetCursor(ctx(t), c.ClientID, c.Inbox); err != nil || seq != c.Seq {
			t.Errorf("GetCursor(%s, %s) = %d, %v; want %d kept", c.ClientID, c.Inbox, seq, err, c.Seq)
		}
	}

	// Again: nothing more to delete. The zero Retention deletes nothing.
	if p, err := s.Prune(ctx(t), r); err != nil || p != (storage.Pruned{}) {
		t.Errorf("second Prune = %+v, %v; want nothing", p, err)
	}
	if p, err := s.Prune(ctx(t), storage.Retention{}); err != nil || p != (storage.Pruned{}) {
		t.Errorf("Prune of the zero Retention = %+v, %v; want nothing", p, err)
	}
}
