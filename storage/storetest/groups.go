package storetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

func groupTests() map[string]func(t *testing.T, s storage.Store) {
	return map[string]func(t *testing.T, s storage.Store){
		"groups":        testGroups,
		"group members": testGroupMembers,
		"group history": testGroupHistory,
	}
}

func memberIDs(g storage.Group) []string {
	var out []string
	for _, m := range g.Members {
		out = append(out, m.User)
	}
	return out
}

func testGroups(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol")
	g := storage.Group{ID: "trip", Name: "Trip", Owner: "alice", Members: []storage.Member{
		{User: "alice", Role: storage.RoleOwner}, {User: "bob", Role: storage.RoleMember}}}
	if err := s.CreateGroup(ctx(t), g); err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	if err := s.CreateGroup(ctx(t), g); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("CreateGroup with a taken id: %v, want ErrExists", err)
	}
	bad := storage.Group{ID: "x", Name: "X", Owner: "alice", Members: []storage.Member{{User: "alice", Role: storage.RoleOwner}, {User: "nobody", Role: storage.RoleMember}}}
	if err := s.CreateGroup(ctx(t), bad); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("CreateGroup with an unknown member: %v, want ErrNotFound", err)
	}
	if _, err := s.GetGroup(ctx(t), "x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a failed CreateGroup left a group behind: %v", err)
	}
	got, err := s.GetGroup(ctx(t), "trip")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Trip" || got.Owner != "alice" || got.CreatedAt.IsZero() || !slices.Equal(memberIDs(got), []string{"alice", "bob"}) || got.LastSeq != 0 {
		t.Fatalf("GetGroup = %+v", got)
	}
	if got.Members[0].Role != storage.RoleOwner || got.Members[1].Role != storage.RoleMember {
		t.Fatalf("roles = %+v", got.Members)
	}
	// The group has an inbox numbered like any other.
	m := dm("bob", "alice", "")
	m.To, m.Inboxes = "trip", []string{protocol.GroupInbox("trip")}
	es, _, err := s.Append(ctx(t), m)
	if err != nil || es[0].Seq != 1 {
		t.Fatalf("Append to the group: %+v %v", es, err)
	}
	if got, _ := s.GetGroup(ctx(t), "trip"); got.LastSeq != 1 {
		t.Fatalf("LastSeq = %d, want 1", got.LastSeq)
	}
	if err := s.RenameGroup(ctx(t), "trip", "Road trip"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetGroup(ctx(t), "trip"); got.Name != "Road trip" {
		t.Fatalf("name after rename = %q", got.Name)
	}
	if err := s.RenameGroup(ctx(t), "nope", "x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("RenameGroup(unknown) = %v", err)
	}
	gs, err := s.UserGroups(ctx(t), "bob")
	if err != nil || len(gs) != 1 || gs[0].ID != "trip" || len(gs[0].Members) != 2 {
		t.Fatalf("UserGroups(bob) = %+v, %v", gs, err)
	}
	if gs, _ := s.UserGroups(ctx(t), "carol"); len(gs) != 0 {
		t.Fatalf("UserGroups(carol) = %+v", gs)
	}
}

func testGroupMembers(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "dave")
	if err := s.CreateGroup(ctx(t), storage.Group{ID: "g1", Name: "G", Owner: "alice",
		Members: []storage.Member{{User: "alice", Role: storage.RoleOwner}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx(t), "g1", "dave", storage.RoleMember); err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	if err := s.AddMember(ctx(t), "g1", "dave", storage.RoleMember); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("AddMember twice: %v, want ErrExists", err)
	}
	if err := s.AddMember(ctx(t), "g1", "nobody", storage.RoleMember); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("AddMember(unknown user): %v, want ErrNotFound", err)
	}
	if err := s.AddMember(ctx(t), "nope", "bob", storage.RoleMember); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("AddMember(unknown group): %v, want ErrNotFound", err)
	}
	m, err := s.GetMembership(ctx(t), "g1", "dave")
	if err != nil || !m.Current || m.Role != storage.RoleMember {
		t.Fatalf("GetMembership(dave) = %+v, %v", m, err)
	}
	if err := s.RemoveMember(ctx(t), "g1", "dave", 7); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	if err := s.RemoveMember(ctx(t), "g1", "dave", 8); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("RemoveMember twice: %v, want ErrNotFound", err)
	}
	if m, _ := s.GetMembership(ctx(t), "g1", "dave"); m.Current || m.RemovedSeq != 7 {
		t.Fatalf("after removal: %+v", m)
	}
	if _, err := s.GetMembership(ctx(t), "g1", "bob"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetMembership of a never-member: %v", err)
	}
	if g, _ := s.GetGroup(ctx(t), "g1"); !slices.Equal(memberIDs(g), []string{"alice"}) {
		t.Fatalf("members after removal = %v", memberIDs(g))
	}
	// Back again.
	if err := s.AddMember(ctx(t), "g1", "dave", storage.RoleMember); err != nil {
		t.Fatalf("AddMember after removal: %v", err)
	}
	if m, _ := s.GetMembership(ctx(t), "g1", "dave"); !m.Current || m.RemovedSeq != 0 {
		t.Fatalf("re-added: %+v", m)
	}
}

// testGroupHistory: a member added later reads from its join (FromSeq is the
// group inbox's next seq when it was added, again when it is added back);
// the founders from the start; everyone from the start in a 'full' group.
func testGroupHistory(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol", "dave")
	if err := s.CreateGroup(ctx(t), storage.Group{ID: "g", Name: "G", Owner: "alice", Members: []storage.Member{
		{User: "alice", Role: storage.RoleOwner}, {User: "bob", Role: storage.RoleMember, FromSeq: 42}}}); err != nil {
		t.Fatal(err)
	}
	post := func(n int) {
		t.Helper()
		for range n {
			m := dm("alice", "alice", "")
			m.To, m.Inboxes = "g", []string{protocol.GroupInbox("g")}
			if _, _, err := s.Append(ctx(t), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	from := func(user string) int64 {
		t.Helper()
		m, err := s.GetMembership(ctx(t), "g", user)
		if err != nil {
			t.Fatalf("GetMembership(%s): %v", user, err)
		}
		g, err := s.GetGroup(ctx(t), "g")
		if err != nil {
			t.Fatal(err)
		}
		for _, gm := range g.Members {
			if gm.User == user && gm.FromSeq != m.FromSeq {
				t.Fatalf("%s: Member.FromSeq %d, Membership.FromSeq %d", user, gm.FromSeq, m.FromSeq)
			}
		}
		return m.FromSeq
	}
	if g, _ := s.GetGroup(ctx(t), "g"); g.History != storage.HistoryJoin {
		t.Fatalf("History of a new group = %q, want %q", g.History, storage.HistoryJoin)
	}
	if f := from("bob"); f != 0 {
		t.Fatalf("a founding member's FromSeq = %d, want 0 (CreateGroup ignores what it is given)", f)
	}
	post(2)
	if err := s.AddMember(ctx(t), "g", "carol", storage.RoleMember); err != nil {
		t.Fatal(err)
	}
	if f := from("carol"); f != 3 {
		t.Fatalf("FromSeq of a member added at seq 2 = %d, want 3", f)
	}
	post(2) // carol's member_added (3), a message (4)
	if err := s.RemoveMember(ctx(t), "g", "carol", 4); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.GetMembership(ctx(t), "g", "carol"); m.FromSeq != 3 || m.RemovedSeq != 4 {
		t.Fatalf("a former member's membership = %+v, want FromSeq 3, RemovedSeq 4", m)
	}
	post(3) // 5..7 while carol is out
	if err := s.AddMember(ctx(t), "g", "carol", storage.RoleMember); err != nil {
		t.Fatal(err)
	}
	if f := from("carol"); f != 8 {
		t.Fatalf("FromSeq of a member added back at seq 7 = %d, want 8", f)
	}
	// A 'full' group reads every FromSeq as 0, and keeps them.
	if err := s.SetGroupHistory(ctx(t), "g", storage.HistoryFull); err != nil {
		t.Fatalf("SetGroupHistory: %v", err)
	}
	if g, _ := s.GetGroup(ctx(t), "g"); g.History != storage.HistoryFull {
		t.Fatalf("History = %q, want full", g.History)
	}
	if f := from("carol"); f != 0 {
		t.Fatalf("FromSeq in a 'full' group = %d, want 0", f)
	}
	if gs, _ := s.UserGroups(ctx(t), "carol"); len(gs) != 1 || gs[0].History != storage.HistoryFull {
		t.Fatalf("UserGroups(carol) = %+v", gs)
	}
	if err := s.AddMember(ctx(t), "g", "dave", storage.RoleMember); err != nil {
		t.Fatal(err)
	}
	if f := from("dave"); f != 0 {
		t.Fatalf("FromSeq of a member added to a 'full' group = %d, want 0", f)
	}
	if err := s.SetGroupHistory(ctx(t), "g", storage.HistoryJoin); err != nil {
		t.Fatal(err)
	}
	if f, d := from("carol"), from("dave"); f != 8 || d != 8 {
		t.Fatalf("FromSeq back in a 'join' group: carol %d, dave %d; want 8, 8", f, d)
	}
	if err := s.SetGroupHistory(ctx(t), "g", "everything"); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("SetGroupHistory(everything) = %v, want ErrInvalid", err)
	}
	if err := s.SetGroupHistory(ctx(t), "nope", storage.HistoryFull); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SetGroupHistory(unknown group) = %v, want ErrNotFound", err)
	}
	// A group created 'full'; a history no store knows is refused.
	if err := s.CreateGroup(ctx(t), storage.Group{ID: "f", Name: "F", Owner: "alice", History: storage.HistoryFull,
		Members: []storage.Member{{User: "alice", Role: storage.RoleOwner}}}); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.GetGroup(ctx(t), "f"); g.History != storage.HistoryFull {
		t.Fatalf("History of a group created full = %q", g.History)
	}
	if err := s.CreateGroup(ctx(t), storage.Group{ID: "x", Name: "X", Owner: "alice", History: "some",
		Members: []storage.Member{{User: "alice", Role: storage.RoleOwner}}}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("CreateGroup with history %q = %v, want ErrInvalid", "some", err)
	}
}
