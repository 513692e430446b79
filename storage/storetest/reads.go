package storetest

import (
	"testing"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

func readTests() map[string]func(t *testing.T, s storage.Store) {
	return map[string]func(t *testing.T, s storage.Store){
		"read cursors":                testReadCursors,
		"conversations":               testConversations,
		"conversations from the join": testConversationsFromJoin,
	}
}

func testReadCursors(t *testing.T, s storage.Store) {
	c := storage.ReadCursor{User: "bob", Inbox: "u/bob", Conv: "alice", Seq: 5}
	if prev, err := s.SetReadCursor(ctx(t), c); err != nil || prev != 0 {
		t.Fatalf("first SetReadCursor = %d, %v", prev, err)
	}
	c.Seq = 9
	if prev, err := s.SetReadCursor(ctx(t), c); err != nil || prev != 5 {
		t.Fatalf("SetReadCursor forward = %d, %v; want prev 5", prev, err)
	}
	c.Seq = 3
	if prev, err := s.SetReadCursor(ctx(t), c); err != nil || prev != 9 {
		t.Fatalf("SetReadCursor backward = %d, %v; want 9", prev, err)
	}
	if seq, err := s.GetReadCursor(ctx(t), "bob", "u/bob", "alice"); err != nil || seq != 9 {
		t.Fatalf("GetReadCursor = %d, %v; want 9 (never backward)", seq, err)
	}
	if seq, err := s.GetReadCursor(ctx(t), "bob", "u/bob", ""); err != nil || seq != 0 {
		t.Fatalf("GetReadCursor of another conversation = %d, %v", seq, err)
	}
	// CountReaders counts whole-inbox cursors at or past a seq.
	for _, u := range []string{"x", "y", "z"} {
		s.SetReadCursor(ctx(t), storage.ReadCursor{User: u, Inbox: "g/g", Seq: map[string]int64{"x": 3, "y": 7, "z": 10}[u]})
	}
	if n, err := s.CountReaders(ctx(t), "g/g", 7, "z"); err != nil || n != 1 {
		t.Fatalf("CountReaders(7, except z) = %d, %v; want 1 (y)", n, err)
	}
}

func testConversations(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol")
	send := func(from, to string) protocol.Entry {
		t.Helper()
		es, _, err := s.Append(ctx(t), dm(from, to, ""))
		if err != nil {
			t.Fatal(err)
		}
		return es[0]
	}
	send("bob", "alice")         // u/alice 1
	send("bob", "alice")         // u/alice 2
	mine := send("alice", "bob") // u/alice 3 (alice's copy is es[1])
	_ = mine
	if err := s.CreateGroup(ctx(t), storage.Group{ID: "trip", Name: "Trip", Owner: "bob", Members: []storage.Member{
		{User: "bob", Role: storage.RoleOwner}, {User: "alice", Role: storage.RoleMember}}}); err != nil {
		t.Fatal(err)
	}
	gm := dm("bob", "trip", "")
	gm.Inboxes = []string{"g/trip"}
	if _, _, err := s.Append(ctx(t), gm); err != nil {
		t.Fatal(err)
	}
	send("carol", "alice") // u/alice 4: newest
	if _, err := s.SetReadCursor(ctx(t), storage.ReadCursor{User: "alice", Inbox: "u/alice", Conv: "bob", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	cs, err := s.Conversations(ctx(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 {
		t.Fatalf("alice has %d conversations, want 3: %+v", len(cs), cs)
	}
	byKey := map[string]storage.Conversation{}
	for _, c := range cs {
		byKey[c.Peer+c.Group] = c
	}
	if cs[0].Peer != "carol" {
		t.Fatalf("newest conversation is %+v, want carol's", cs[0])
	}
	if c := byKey["bob"]; c.Unread != 1 || c.ReadSeq != 1 || c.Last == nil || c.Last.Seq != 3 || c.Last.From != "alice" {
		t.Fatalf("conversation with bob = %+v (last %+v); want 1 unread, read 1, last = alice's message at 3", c, c.Last)
	}
	if c := byKey["carol"]; c.Unread != 1 || c.ReadSeq != 0 {
		t.Fatalf("conversation with carol = %+v", c)
	}
	if c := byKey["trip"]; c.Unread != 1 || c.Last == nil || c.Last.Inbox != "g/trip" {
		t.Fatalf("group conversation = %+v", c)
	}
	// A whole-inbox cursor reads every conversation of the inbox.
	if _, err := s.SetReadCursor(ctx(t), storage.ReadCursor{User: "alice", Inbox: "u/alice", Seq: 4}); err != nil {
		t.Fatal(err)
	}
	cs, _ = s.Conversations(ctx(t), "alice")
	for _, c := range cs {
		if c.Group == "" && c.Unread != 0 {
			t.Fatalf("after reading the whole inbox: %+v", c)
		}
	}
	un, err := s.Unread(ctx(t), "alice", "u/alice", "bob", 0, 10, 10)
	if err != nil || len(un) != 2 || un[0].Seq != 1 || un[1].Seq != 2 {
		t.Fatalf("Unread(bob) = %+v, %v; want bob's messages 1 and 2", un, err)
	}
}

// testConversationsFromJoin: a group member added later counts unread
// messages, and finds the newest entry, from its join only; in a 'full'
// group from the start.
func testConversationsFromJoin(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol")
	if err := s.CreateGroup(ctx(t), storage.Group{ID: "g", Name: "G", Owner: "bob", Members: []storage.Member{
		{User: "bob", Role: storage.RoleOwner}, {User: "alice", Role: storage.RoleMember}}}); err != nil {
		t.Fatal(err)
	}
	post := func(from string) {
		t.Helper()
		m := dm(from, "g", "")
		m.Inboxes = []string{"g/g"}
		if _, _, err := s.Append(ctx(t), m); err != nil {
			t.Fatal(err)
		}
	}
	post("alice")
	post("alice") // seqs 1, 2: before carol
	if err := s.AddMember(ctx(t), "g", "carol", storage.RoleMember); err != nil {
		t.Fatal(err)
	}
	group := func() storage.Conversation {
		t.Helper()
		cs, err := s.Conversations(ctx(t), "carol")
		if err != nil || len(cs) != 1 || cs[0].Group != "g" {
			t.Fatalf("carol's conversations = %+v, %v", cs, err)
		}
		return cs[0]
	}
	if c := group(); c.Unread != 0 || c.Last != nil {
		t.Fatalf("before anything after carol's join: %+v (last %+v); want nothing unread, no last entry", c, c.Last)
	}
	post("alice") // 3: carol's
	if c := group(); c.Unread != 1 || c.Last == nil || c.Last.Seq != 3 {
		t.Fatalf("after one message since carol's join: %+v (last %+v); want 1 unread, last at 3", c, c.Last)
	}
	if err := s.SetGroupHistory(ctx(t), "g", storage.HistoryFull); err != nil {
		t.Fatal(err)
	}
	if c := group(); c.Unread != 3 {
		t.Fatalf("in a 'full' group: %+v; want 3 unread", c)
	}
}
