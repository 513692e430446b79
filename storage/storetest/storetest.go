// Package storetest is the contract every storage.Store implementation must
// pass. An implementation's tests call Run with a constructor that returns a
// fresh, empty store for each subtest.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Run runs the contract suite. newStore must return an empty store; Run
// closes it.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := map[string]func(t *testing.T, s storage.Store){
		"users":                  testUsers,
		"users like":             testUsersLike,
		"tokens":                 testTokens,
		"append numbers inboxes": testAppendSeq,
		"append unknown inbox":   testAppendUnknownInbox,
		"append idempotent":      testAppendIdempotent,
		"read pages":             testReadPages,
		"concurrent senders":     testConcurrentSenders,
		"crossing messages":      testCrossing,
		"cursors":                testCursors,
	}
	for name, test := range groupTests() {
		tests[name] = test
	}
	for name, test := range readTests() {
		tests[name] = test
	}
	for name, test := range presenceTests() {
		tests[name] = test
	}
	for name, test := range consentTests() {
		tests[name] = test
	}
	for name, test := range pushTests() {
		tests[name] = test
	}
	for name, test := range deliveryTests() {
		tests[name] = test
	}
	for name, test := range invalidTests() {
		tests[name] = test
	}
	for name, test := range sessionTests() {
		tests[name] = test
	}
	for name, test := range idempotencyTests() {
		tests[name] = test
	}
	for name, test := range tests {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			test(t, s)
		})
	}
	t.Run("closed", func(t *testing.T) {
		s := newStore(t)
		mustUser(t, s, "alice")
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		_, _, err := s.Append(context.Background(), dm("alice", "alice", ""))
		if err == nil {
			t.Fatal("Append after Close succeeded")
		}
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustUser(t *testing.T, s storage.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := s.CreateUser(ctx(t), storage.User{ID: id, Name: "User " + id, PasswordHash: "h-" + id}); err != nil {
			t.Fatalf("CreateUser(%s): %v", id, err)
		}
	}
}

// dm builds a direct message from → to with the sender's copy.
func dm(from, to, cid string) storage.Message {
	inboxes := []string{protocol.UserInbox(to)}
	if from != to {
		inboxes = append(inboxes, protocol.UserInbox(from))
	}
	return storage.Message{
		ID: uuid.NewString(), From: from, To: to, TS: time.Now().UnixMilli(), Type: protocol.TypeMsg,
		Cid: cid, Data: []byte(`{"text":"hi"}`), Inboxes: inboxes,
	}
}

func testUsers(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice")
	u, err := s.GetUser(ctx(t), "alice")
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if u.ID != "alice" || u.Name != "User alice" || u.PasswordHash != "h-alice" || u.CreatedAt.IsZero() {
		t.Fatalf("GetUser = %+v", u)
	}
	if err := s.CreateUser(ctx(t), storage.User{ID: "alice", Name: "x", PasswordHash: "y"}); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("CreateUser of a taken id: err = %v, want ErrExists", err)
	}
	if _, err := s.GetUser(ctx(t), "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetUser(nobody): err = %v, want ErrNotFound", err)
	}
	seq, err := s.LastSeq(ctx(t), "u/alice")
	if err != nil || seq != 0 {
		t.Fatalf("LastSeq of a new user's inbox = %d, %v; want 0, nil", seq, err)
	}
	if _, err := s.LastSeq(ctx(t), "u/nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("LastSeq(u/nobody): err = %v, want ErrNotFound", err)
	}
}

func testTokens(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice")
	now := time.Now()
	if err := s.CreateToken(ctx(t), []byte("h1"), "alice", now.Add(time.Hour)); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if err := s.CreateToken(ctx(t), []byte("h2"), "alice", now.Add(-time.Second)); err != nil {
		t.Fatalf("CreateToken (expired): %v", err)
	}
	if u, err := s.TokenUser(ctx(t), []byte("h1"), now); err != nil || u != "alice" {
		t.Fatalf("TokenUser(h1) = %q, %v", u, err)
	}
	if _, err := s.TokenUser(ctx(t), []byte("h2"), now); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("TokenUser(expired): err = %v, want ErrNotFound", err)
	}
	if _, err := s.TokenUser(ctx(t), []byte("nope"), now); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("TokenUser(unknown): err = %v, want ErrNotFound", err)
	}
	if err := s.CreateToken(ctx(t), []byte("h3"), "nobody", now.Add(time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("CreateToken for an unknown user: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteToken(ctx(t), []byte("h1")); err != nil {
		t.Fatalf("DeleteToken: %v", err)
	}
	if _, err := s.TokenUser(ctx(t), []byte("h1"), now); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("TokenUser after delete: err = %v, want ErrNotFound", err)
	}
}

func testAppendSeq(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	for i := 1; i <= 3; i++ {
		m := dm("alice", "bob", "")
		es, dup, err := s.Append(ctx(t), m)
		if err != nil || dup {
			t.Fatalf("Append: dup=%v err=%v", dup, err)
		}
		if len(es) != 2 {
			t.Fatalf("Append returned %d entries, want 2", len(es))
		}
		for j, e := range es {
			if e.Inbox != m.Inboxes[j] || e.Seq != int64(i) || e.ID != m.ID || e.From != "alice" || e.To != "bob" ||
				e.TS != m.TS || e.Type != protocol.TypeMsg || string(e.Data) != `{"text":"hi"}` {
				t.Fatalf("entry %d of message %d = %+v", j, i, e)
			}
		}
	}
	// bob answers: his inbox continues at 4, alice's too.
	es, _, err := s.Append(ctx(t), dm("bob", "alice", ""))
	if err != nil {
		t.Fatal(err)
	}
	if es[0].Inbox != "u/alice" || es[0].Seq != 4 || es[1].Inbox != "u/bob" || es[1].Seq != 4 {
		t.Fatalf("reply entries = %+v", es)
	}
	got, err := s.Read(ctx(t), "u/bob", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("Read(u/bob) returned %d entries, want 4", len(got))
	}
	for i, e := range got {
		if e.Seq != int64(i+1) || e.Inbox != "u/bob" {
			t.Fatalf("Read(u/bob)[%d] = %+v", i, e)
		}
	}
	if got[3].From != "bob" || got[3].To != "alice" {
		t.Fatalf("sender copy = %+v", got[3])
	}
	if seq, err := s.LastSeq(ctx(t), "u/bob"); err != nil || seq != 4 {
		t.Fatalf("LastSeq(u/bob) = %d, %v; want 4", seq, err)
	}
}

func testAppendUnknownInbox(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice")
	_, _, err := s.Append(ctx(t), dm("alice", "nobody", "c1"))
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Append to an unknown inbox: err = %v, want ErrNotFound", err)
	}
	// Nothing was stored: not the sender's copy, not its counter, not the cid.
	if seq, _ := s.LastSeq(ctx(t), "u/alice"); seq != 0 {
		t.Fatalf("sender's inbox moved to %d after a failed append", seq)
	}
	mustUser(t, s, "nobody")
	es, dup, err := s.Append(ctx(t), dm("alice", "nobody", "c1"))
	if err != nil || dup || es[0].Seq != 1 || es[1].Seq != 1 {
		t.Fatalf("Append after the inbox exists: %+v dup=%v err=%v", es, dup, err)
	}
}

func testAppendIdempotent(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	first, dup, err := s.Append(ctx(t), dm("alice", "bob", "c-1"))
	if err != nil || dup {
		t.Fatalf("first Append: dup=%v err=%v", dup, err)
	}
	again, dup, err := s.Append(ctx(t), dm("alice", "bob", "c-1"))
	if err != nil || !dup {
		t.Fatalf("repeated Append: dup=%v err=%v, want dup", dup, err)
	}
	if len(again) != len(first) {
		t.Fatalf("repeat returned %d entries, want %d", len(again), len(first))
	}
	for i := range first {
		if again[i].ID != first[i].ID || again[i].Seq != first[i].Seq || again[i].Inbox != first[i].Inbox {
			t.Fatalf("repeat entry %d = %+v, want %+v", i, again[i], first[i])
		}
	}
	// The same cid from another sender is another message.
	if _, dup, err := s.Append(ctx(t), dm("bob", "alice", "c-1")); err != nil || dup {
		t.Fatalf("same cid from bob: dup=%v err=%v", dup, err)
	}
	// Concurrent repeats of one cid store it once.
	var wg sync.WaitGroup
	ids := make([]string, 20)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			es, _, err := s.Append(ctx(t), dm("alice", "bob", "c-2"))
			if err != nil {
				t.Errorf("concurrent Append: %v", err)
				return
			}
			ids[i] = es[0].ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent repeats got different ids: %v", ids)
		}
	}
	if seq, _ := s.LastSeq(ctx(t), "u/bob"); seq != 3 {
		t.Fatalf("u/bob last seq = %d, want 3 (c-1, bob's reply, c-2)", seq)
	}
}

func testReadPages(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	for i := 0; i < 10; i++ {
		if _, _, err := s.Append(ctx(t), dm("alice", "bob", "")); err != nil {
			t.Fatal(err)
		}
	}
	seqs := func(es []protocol.Entry) []int64 {
		var out []int64
		for _, e := range es {
			out = append(out, e.Seq)
		}
		return out
	}
	cases := map[string]struct {
		read func() ([]protocol.Entry, error)
		want []int64
	}{
		"after 0 limit 3": {func() ([]protocol.Entry, error) { return s.Read(ctx(t), "u/bob", 0, 3) }, []int64{1, 2, 3}},
		"after 8":         {func() ([]protocol.Entry, error) { return s.Read(ctx(t), "u/bob", 8, 100) }, []int64{9, 10}},
		"after the end":   {func() ([]protocol.Entry, error) { return s.Read(ctx(t), "u/bob", 10, 100) }, nil},
		"before 6":        {func() ([]protocol.Entry, error) { return s.ReadBefore(ctx(t), "u/bob", 6, 3) }, []int64{3, 4, 5}},
		"before 3":        {func() ([]protocol.Entry, error) { return s.ReadBefore(ctx(t), "u/bob", 3, 5) }, []int64{1, 2}},
		"unknown inbox":   {func() ([]protocol.Entry, error) { return s.Read(ctx(t), "u/nobody", 0, 5) }, nil},
	}
	for name, c := range cases {
		es, err := c.read()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(seqs(es), c.want) {
			t.Errorf("%s: seqs %v, want %v", name, seqs(es), c.want)
		}
	}
}

// testConcurrentSenders: 50 senders into one inbox get gapless, unique seqs.
func testConcurrentSenders(t *testing.T, s storage.Store) {
	mustUser(t, s, "bob")
	const senders, each = 50, 20
	for i := 0; i < senders; i++ {
		mustUser(t, s, fmt.Sprintf("s%d", i))
	}
	var wg sync.WaitGroup
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				if _, _, err := s.Append(ctx(t), dm(fmt.Sprintf("s%d", i), "bob", fmt.Sprintf("m%d", j))); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	es, err := s.Read(ctx(t), "u/bob", 0, senders*each+10)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != senders*each {
		t.Fatalf("u/bob has %d entries, want %d", len(es), senders*each)
	}
	for i, e := range es {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d: not gapless", i, e.Seq)
		}
	}
}

// testCrossing: messages in both directions at once (each touching two
// inboxes) neither deadlock nor leave gaps.
func testCrossing(t *testing.T, s storage.Store) {
	users := []string{"a", "b", "c", "d"}
	mustUser(t, s, users...)
	var wg sync.WaitGroup
	const each = 40
	for _, from := range users {
		for _, to := range users {
			if from == to {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < each; j++ {
					if _, _, err := s.Append(ctx(t), dm(from, to, "")); err != nil {
						t.Errorf("Append %s→%s: %v", from, to, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, u := range users {
		es, err := s.Read(ctx(t), protocol.UserInbox(u), 0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		// each user receives from 3 and sends to 3: 6 × each entries.
		if len(es) != 6*each {
			t.Fatalf("%s has %d entries, want %d", u, len(es), 6*each)
		}
		for i, e := range es {
			if e.Seq != int64(i+1) {
				t.Fatalf("%s entry %d has seq %d", u, i, e.Seq)
			}
		}
	}
}

func testCursors(t *testing.T, s storage.Store) {
	if _, err := s.GetCursor(ctx(t), "bob/phone", "u/bob"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetCursor of a new device: err = %v, want ErrNotFound", err)
	}
	err := s.SaveCursors(ctx(t), []storage.Cursor{
		{ClientID: "bob/phone", Inbox: "u/bob", Seq: 5},
		{ClientID: "bob/phone", Inbox: "u/bob", Seq: 7},
		{ClientID: "bob/laptop", Inbox: "u/bob", Seq: 2},
	})
	if err != nil {
		t.Fatalf("SaveCursors: %v", err)
	}
	if seq, err := s.GetCursor(ctx(t), "bob/phone", "u/bob"); err != nil || seq != 7 {
		t.Fatalf("GetCursor(bob/phone) = %d, %v; want 7", seq, err)
	}
	if err := s.SaveCursors(ctx(t), []storage.Cursor{{ClientID: "bob/phone", Inbox: "u/bob", Seq: 3}}); err != nil {
		t.Fatal(err)
	}
	if seq, _ := s.GetCursor(ctx(t), "bob/phone", "u/bob"); seq != 7 {
		t.Fatalf("cursor moved backwards to %d", seq)
	}
	if seq, _ := s.GetCursor(ctx(t), "bob/laptop", "u/bob"); seq != 2 {
		t.Fatalf("GetCursor(bob/laptop) = %d, want 2", seq)
	}
}

func testUsersLike(t *testing.T, s storage.Store) {
	ids := []string{"alice", "a1ice", "bob", "b0b", "mallory", "rnallory", "wendy", "vvendy", "li", "l1", "carol"}
	mustUser(t, s, ids...)
	if _, err := s.DeleteUser(ctx(t), "b0b", time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		skeleton string
		want     []string
	}{
		{protocol.IDSkeleton("alice"), []string{"a1ice", "alice"}},
		{protocol.IDSkeleton("bob"), []string{"b0b", "bob"}}, // a deleted account's id too
		{protocol.IDSkeleton("mallory"), []string{"mallory", "rnallory"}},
		{protocol.IDSkeleton("wendy"), []string{"vvendy", "wendy"}},
		{protocol.IDSkeleton("ll"), []string{"l1", "li"}},
		{protocol.IDSkeleton("dave"), nil},
	} {
		got, err := s.UsersLike(ctx(t), c.skeleton)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("UsersLike(%q) = %v, %v; want %v", c.skeleton, got, err, c.want)
		}
	}
	// The store's skeleton of every id is protocol.IDSkeleton's.
	for _, id := range ids {
		got, err := s.UsersLike(ctx(t), protocol.IDSkeleton(id))
		if err != nil || !slices.Contains(got, id) {
			t.Errorf("UsersLike(IDSkeleton(%q)) = %v, %v; want it among them", id, got, err)
		}
	}
}
