package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/storage"
)

func consentTests() map[string]func(t *testing.T, s storage.Store) {
	return map[string]func(t *testing.T, s storage.Store){
		"blocks":                    testBlocks,
		"contact list":              testContactList,
		"group adds":                testGroupAdds,
		"stances":                   testStances,
		"consent of a deleted user": testConsentDeletedUser,
	}
}

func peerIDs(ps []storage.Peer) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.User
	}
	return out
}

func testBlocks(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol")
	t0 := time.Now().Truncate(time.Millisecond)
	if err := s.Block(ctx(t), "alice", "bob", t0); err != nil {
		t.Fatalf("Block: %v", err)
	}
	if err := s.Block(ctx(t), "alice", "carol", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// Again: not an error, and its time stays.
	if err := s.Block(ctx(t), "alice", "bob", t0.Add(time.Hour)); err != nil {
		t.Fatalf("Block again: %v", err)
	}
	bs, err := s.Blocks(ctx(t), "alice")
	if err != nil || !slices.Equal(peerIDs(bs), []string{"bob", "carol"}) || !bs[0].At.Equal(t0) {
		t.Fatalf("Blocks = %+v, %v; want bob (at %v), carol", bs, err, t0)
	}
	// One way: bob blocked nobody.
	if bs, err := s.Blocks(ctx(t), "bob"); err != nil || len(bs) != 0 {
		t.Fatalf("bob's Blocks = %+v, %v; want none", bs, err)
	}
	if err := s.Block(ctx(t), "alice", "nobody", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Block of an unknown user: %v, want ErrNotFound", err)
	}
	if err := s.Block(ctx(t), "nobody", "alice", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Block by an unknown user: %v, want ErrNotFound", err)
	}
	if err := s.Unblock(ctx(t), "alice", "bob"); err != nil {
		t.Fatalf("Unblock: %v", err)
	}
	if err := s.Unblock(ctx(t), "alice", "bob"); err != nil {
		t.Fatalf("Unblock again: %v", err)
	}
	if bs, err := s.Blocks(ctx(t), "alice"); err != nil || !slices.Equal(peerIDs(bs), []string{"carol"}) {
		t.Fatalf("Blocks after Unblock = %+v, %v; want carol", bs, err)
	}
	if bs, err := s.Blocks(ctx(t), "nobody"); err != nil || len(bs) != 0 {
		t.Fatalf("Blocks of an unknown user = %+v, %v; want none", bs, err)
	}
}

func testContactList(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol")
	t0 := time.Now().Truncate(time.Millisecond)
	// A DM makes a conversation, not a contact.
	if _, _, err := s.Append(ctx(t), dm("bob", "alice", "")); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.IsContact(ctx(t), "alice", "bob"); err != nil || ok {
		t.Fatalf("IsContact after a DM = %v, %v; want false", ok, err)
	}
	if err := s.PutContact(ctx(t), "alice", "bob", t0); err != nil {
		t.Fatalf("PutContact: %v", err)
	}
	if err := s.PutContact(ctx(t), "alice", "bob", t0.Add(time.Hour)); err != nil {
		t.Fatalf("PutContact again: %v", err)
	}
	if ok, err := s.IsContact(ctx(t), "alice", "bob"); err != nil || !ok {
		t.Fatalf("IsContact(alice, bob) = %v, %v; want true", ok, err)
	}
	// One way: alice is not in bob's list.
	if ok, err := s.IsContact(ctx(t), "bob", "alice"); err != nil || ok {
		t.Fatalf("IsContact(bob, alice) = %v, %v; want false", ok, err)
	}
	if err := s.PutContact(ctx(t), "alice", "nobody", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("PutContact of an unknown user: %v, want ErrNotFound", err)
	}
	cs, err := s.Contacts(ctx(t), "alice")
	if err != nil || !slices.Equal(peerIDs(cs), []string{"bob"}) || !cs[0].At.Equal(t0) {
		t.Fatalf("Contacts = %+v, %v; want bob at %v", cs, err, t0)
	}
	if err := s.DeleteContact(ctx(t), "alice", "bob"); err != nil {
		t.Fatalf("DeleteContact: %v", err)
	}
	if err := s.DeleteContact(ctx(t), "alice", "carol"); err != nil {
		t.Fatalf("DeleteContact of one not there: %v", err)
	}
	if ok, err := s.IsContact(ctx(t), "alice", "bob"); err != nil || ok {
		t.Fatalf("IsContact after DeleteContact = %v, %v; want false", ok, err)
	}
}

func testGroupAdds(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice")
	if g, err := s.GroupAdds(ctx(t), "alice"); err != nil || g != storage.GroupAddsEveryone {
		t.Fatalf("default GroupAdds = %q, %v; want everyone", g, err)
	}
	for _, g := range []string{storage.GroupAddsContacts, storage.GroupAddsNobody, storage.GroupAddsEveryone, storage.GroupAddsNobody} {
		if err := s.SetGroupAdds(ctx(t), "alice", g); err != nil {
			t.Fatalf("SetGroupAdds(%s): %v", g, err)
		}
		if got, err := s.GroupAdds(ctx(t), "alice"); err != nil || got != g {
			t.Fatalf("GroupAdds = %q, %v; want %q", got, err, g)
		}
	}
	if err := s.SetGroupAdds(ctx(t), "alice", "friends"); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("SetGroupAdds(friends): %v, want ErrInvalid", err)
	}
	if err := s.SetGroupAdds(ctx(t), "nobody", storage.GroupAddsNobody); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SetGroupAdds of an unknown user: %v, want ErrNotFound", err)
	}
	if _, err := s.GroupAdds(ctx(t), "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GroupAdds of an unknown user: %v, want ErrNotFound", err)
	}
}

func testStances(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol", "dave", "erin")
	now := time.Now()
	// bob blocked alice; carol lists alice and takes adds from contacts;
	// dave takes adds from contacts but does not list alice; erin: nobody.
	for _, err := range []error{
		s.Block(ctx(t), "bob", "alice", now),
		s.PutContact(ctx(t), "carol", "alice", now),
		s.SetGroupAdds(ctx(t), "carol", storage.GroupAddsContacts),
		s.SetGroupAdds(ctx(t), "dave", storage.GroupAddsContacts),
		s.SetGroupAdds(ctx(t), "erin", storage.GroupAddsNobody),
		s.Block(ctx(t), "alice", "carol", now), // alice's own list says nothing of the others' stances
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Stances(ctx(t), []string{"bob", "carol", "dave", "erin", "nobody"}, "alice")
	if err != nil {
		t.Fatalf("Stances: %v", err)
	}
	want := map[string]storage.Stance{
		"bob":   {Blocked: true, GroupAdds: storage.GroupAddsEveryone},
		"carol": {Contact: true, GroupAdds: storage.GroupAddsContacts},
		"dave":  {GroupAdds: storage.GroupAddsContacts},
		"erin":  {GroupAdds: storage.GroupAddsNobody},
	}
	if len(got) != len(want) {
		t.Fatalf("Stances = %+v; want %+v", got, want)
	}
	for u, w := range want {
		if got[u] != w {
			t.Errorf("Stances[%s] = %+v; want %+v", u, got[u], w)
		}
	}
	accepts := map[string]bool{"bob": false, "carol": true, "dave": false, "erin": false}
	for u, w := range accepts {
		if got[u].AcceptsGroupAdd() != w {
			t.Errorf("%s accepts alice's group add: %v; want %v", u, !w, w)
		}
	}
	if got, err := s.Stances(ctx(t), nil, "alice"); err != nil || len(got) != 0 {
		t.Fatalf("Stances of none = %v, %v", got, err)
	}
}

func testConsentDeletedUser(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol")
	now := time.Now()
	for _, err := range []error{
		s.Block(ctx(t), "alice", "bob", now),
		s.PutContact(ctx(t), "alice", "carol", now),
		s.SetGroupAdds(ctx(t), "alice", storage.GroupAddsNobody),
		s.Block(ctx(t), "bob", "alice", now),
		s.PutContact(ctx(t), "carol", "alice", now),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteUser(ctx(t), "alice", now); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	// Its lists and setting are gone, and so is its place in others'.
	if bs, err := s.Blocks(ctx(t), "alice"); err != nil || len(bs) != 0 {
		t.Errorf("a deleted user's blocks: %+v, %v", bs, err)
	}
	if cs, err := s.Contacts(ctx(t), "alice"); err != nil || len(cs) != 0 {
		t.Errorf("a deleted user's contacts: %+v, %v", cs, err)
	}
	if g, err := s.GroupAdds(ctx(t), "alice"); err != nil || g != storage.GroupAddsEveryone {
		t.Errorf("a deleted user's group adds: %q, %v; want the default (no row)", g, err)
	}
	if bs, err := s.Blocks(ctx(t), "bob"); err != nil || len(bs) != 0 {
		t.Errorf("bob's blocks still name the deleted user: %+v, %v", bs, err)
	}
	if cs, err := s.Contacts(ctx(t), "carol"); err != nil || len(cs) != 0 {
		t.Errorf("carol's contacts still name the deleted user: %+v, %v", cs, err)
	}
	// And it cannot be listed again.
	if err := s.PutContact(ctx(t), "carol", "alice", now); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PutContact of a deleted user: %v, want ErrNotFound", err)
	}
	if err := s.Block(ctx(t), "bob", "alice", now); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Block of a deleted user: %v, want ErrNotFound", err)
	}
	if err := s.SetGroupAdds(ctx(t), "alice", storage.GroupAddsNobody); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetGroupAdds of a deleted user: %v, want ErrNotFound", err)
	}
}
