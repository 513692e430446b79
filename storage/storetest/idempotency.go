package storetest

import (
	"slices"
	"sync"
	"testing"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

func idempotencyTests() map[string]func(t *testing.T, s storage.Store) {
	return map[string]func(t *testing.T, s storage.Store){
		"idempotency key per inbox":            testDedupPerInbox,
		"idempotency key per inbox concurrent": testDedupPerInboxConcurrent,
	}
}

// sameEntries reports whether a repeat returned the entries of the first
// append: the same message, copies, inboxes and seqs.
func sameEntries(got, want []protocol.Entry) bool {
	return slices.EqualFunc(got, want, func(a, b protocol.Entry) bool {
		return a.ID == b.ID && a.Inbox == b.Inbox && a.Seq == b.Seq && a.From == b.From && a.To == b.To && a.Cid == b.Cid
	})
}

// testDedupPerInbox: the idempotency key is (sender, inbox, cid). A cid
// reused for another recipient, for a group or for the sender's own inbox
// is a new message; a repeat to the same inbox is the first one; the same
// cid from two senders to one inbox is two messages.
func testDedupPerInbox(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol", "dave")
	g := storage.Group{ID: "trip", Name: "Trip", Owner: "alice", Members: []storage.Member{
		{User: "alice", Role: storage.RoleOwner}, {User: "bob", Role: storage.RoleMember}}}
	if err := s.CreateGroup(ctx(t), g); err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	toGroup := func(from, group, cid string) storage.Message {
		m := dm(from, from, cid)
		m.To, m.Inboxes = group, []string{protocol.GroupInbox(group)}
		return m
	}
	appendNew := func(what string, m storage.Message, seqs ...int64) []protocol.Entry {
		t.Helper()
		es, dup, err := s.Append(ctx(t), m)
		if err != nil || dup {
			t.Fatalf("%s: dup=%v err=%v, want a new message", what, dup, err)
		}
		got := make([]int64, len(es))
		for i, e := range es {
			got[i] = e.Seq
			if e.ID != m.ID || e.Inbox != m.Inboxes[i] {
				t.Fatalf("%s: entry %d = %+v, want message %s in %s", what, i, e, m.ID, m.Inboxes[i])
			}
		}
		if !slices.Equal(got, seqs) {
			t.Fatalf("%s: seqs %v, want %v", what, got, seqs)
		}
		return es
	}
	appendDup := func(what string, m storage.Message, first []protocol.Entry) {
		t.Helper()
		es, dup, err := s.Append(ctx(t), m)
		if err != nil || !dup {
			t.Fatalf("%s: dup=%v err=%v, want a duplicate", what, dup, err)
		}
		if !sameEntries(es, first) {
			t.Fatalf("%s: returned %+v, want the first copies %+v", what, es, first)
		}
	}

	toBob := appendNew("c1 to bob", dm("alice", "bob", "c1"), 1, 1)
	toCarol := appendNew("c1 to carol", dm("alice", "carol", "c1"), 1, 2)
	toGroupEs := appendNew("c1 to the group", toGroup("alice", "trip", "c1"), 1)
	toSelf := appendNew("c1 to herself", dm("alice", "alice", "c1"), 3)
	appendDup("c1 to bob again", dm("alice", "bob", "c1"), toBob)
	appendDup("c1 to carol again", dm("alice", "carol", "c1"), toCarol)
	appendDup("c1 to the group again", toGroup("alice", "trip", "c1"), toGroupEs)
	appendDup("c1 to herself again", dm("alice", "alice", "c1"), toSelf)

	// Two senders, one inbox, one cid: two messages. The group's inbox
	// keys its members' cids apart too.
	fromBob := appendNew("c1 from bob to carol", dm("bob", "carol", "c1"), 2, 2)
	appendNew("c1 from dave to carol", dm("dave", "carol", "c1"), 3, 1)
	appendNew("c1 from bob to the group", toGroup("bob", "trip", "c1"), 2)
	appendDup("c1 from bob to carol again", dm("bob", "carol", "c1"), fromBob)

	for inbox, want := range map[string]int64{"u/alice": 3, "u/bob": 2, "u/carol": 3, "u/dave": 1, "g/trip": 2} {
		if seq, err := s.LastSeq(ctx(t), inbox); err != nil || seq != want {
			t.Errorf("LastSeq(%s) = %d, %v; want %d", inbox, seq, err, want)
		}
	}
}

// testDedupPerInboxConcurrent: appends of one cid by one sender to several
// recipients, each repeated, and of the same cid by other senders, all at
// once (so that the stores group-commit them together): each (sender,
// inbox, cid) is stored once, whichever repeat came first, and every repeat
// gets its entries.
func testDedupPerInboxConcurrent(t *testing.T, s storage.Store) {
	const repeats = 5
	recipients := []string{"bob", "carol", "dave", "erin"}
	senders := []string{"frank", "gina"} // also send c1 to bob
	mustUser(t, s, "alice")
	mustUser(t, s, recipients...)
	mustUser(t, s, senders...)
	type key struct{ from, to string }
	var keys []key
	for _, to := range recipients {
		keys = append(keys, key{"alice", to})
	}
	for _, from := range senders {
		keys = append(keys, key{from, "bob"})
	}
	type answer struct {
		es  []protocol.Entry
		dup bool
	}
	var mu sync.Mutex
	answers := map[key][]answer{}
	var wg sync.WaitGroup
	for range repeats {
		for _, k := range keys {
			wg.Go(func() {
				es, dup, err := s.Append(ctx(t), dm(k.from, k.to, "c1"))
				if err != nil {
					t.Errorf("Append %s→%s: %v", k.from, k.to, err)
					return
				}
				mu.Lock()
				answers[k] = append(answers[k], answer{es, dup})
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	ids := map[string]key{}
	for _, k := range keys {
		as := answers[k]
		var first []protocol.Entry
		for _, a := range as {
			if !a.dup {
				if first != nil {
					t.Fatalf("%s→%s: stored twice: %+v and %+v", k.from, k.to, first, a.es)
				}
				first = a.es
			}
		}
		if first == nil {
			t.Fatalf("%s→%s: every append was a duplicate", k.from, k.to)
		}
		for _, a := range as {
			if !sameEntries(a.es, first) {
				t.Fatalf("%s→%s: a repeat returned %+v, want %+v", k.from, k.to, a.es, first)
			}
		}
		if first[0].Inbox != protocol.UserInbox(k.to) || first[0].From != k.from {
			t.Fatalf("%s→%s: stored %+v", k.from, k.to, first)
		}
		if other, ok := ids[first[0].ID]; ok {
			t.Fatalf("%s→%s and %s→%s got one message %s", k.from, k.to, other.from, other.to, first[0].ID)
		}
		ids[first[0].ID] = k
	}
	want := map[string]int64{"u/alice": int64(len(recipients)), "u/bob": int64(1 + len(senders))}
	for _, to := range recipients[1:] {
		want[protocol.UserInbox(to)] = 1
	}
	for _, from := range senders {
		want[protocol.UserInbox(from)] = 1
	}
	for inbox, n := range want {
		es, err := s.Read(ctx(t), inbox, 0, 100)
		if err != nil || int64(len(es)) != n {
			t.Errorf("%s holds %d entries, %v; want %d", inbox, len(es), err, n)
			continue
		}
		for i, e := range es {
			if e.Seq != int64(i+1) {
				t.Errorf("%s entry %d has seq %d", inbox, i, e.Seq)
			}
		}
	}
}
