package storetest

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

func sessionTests() map[string]func(t *testing.T, s storage.Store) {
	return map[string]func(t *testing.T, s storage.Store){
		"user tokens":        testUserTokens,
		"touch tokens":       testTouchTokens,
		"valid tokens":       testValidTokens,
		"delete user tokens": testDeleteUserTokens,
		"set password":       testSetPassword,
		"delete user":        testDeleteUser,
	}
}

// sortedHashes returns hs sorted, as strings, for comparing sets.
func sortedHashes(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = string(h)
	}
	slices.Sort(out)
	return out
}

func wantHashes(t *testing.T, what string, got [][]byte, want ...string) {
	t.Helper()
	slices.Sort(want)
	if g := sortedHashes(got); !slices.Equal(g, want) {
		t.Errorf("%s = %q, want %q", what, g, want)
	}
}

// testUserTokens: a user's unexpired tokens, their last use their creation
// until one is recorded; none for an unknown user.
func testUserTokens(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	now := time.Now()
	for _, tok := range []struct {
		hash, user string
		expires    time.Time
	}{{"a1", "alice", now.Add(time.Hour)}, {"a2", "alice", now.Add(2 * time.Hour)}, {"old", "alice", now.Add(-time.Second)},
		{"b1", "bob", now.Add(time.Hour)}} {
		if err := s.CreateToken(ctx(t), []byte(tok.hash), tok.user, tok.expires); err != nil {
			t.Fatalf("CreateToken(%s): %v", tok.hash, err)
		}
	}
	ts, err := s.UserTokens(ctx(t), "alice", now)
	if err != nil {
		t.Fatalf("UserTokens: %v", err)
	}
	var hs [][]byte
	for _, tok := range ts {
		hs = append(hs, tok.Hash)
		if tok.User != "alice" || tok.CreatedAt.IsZero() || !tok.LastUsedAt.Equal(tok.CreatedAt) ||
			tok.LastAddr != "" || tok.LastAgent != "" || tok.LastClient != "" {
			t.Errorf("new token %+v: want alice's, last used when created, no address", tok)
		}
		if d := tok.CreatedAt.Sub(now); d < -time.Minute || d > time.Minute {
			t.Errorf("token created at %v, want about %v", tok.CreatedAt, now)
		}
	}
	wantHashes(t, "alice's unexpired tokens", hs, "a1", "a2")
	for _, tok := range ts {
		want := now.Add(time.Hour)
		if string(tok.Hash) == "a2" {
			want = now.Add(2 * time.Hour)
		}
		if d := tok.ExpiresAt.Sub(want); d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("token %s expires at %v, want %v", tok.Hash, tok.ExpiresAt, want)
		}
	}
	if ts, err := s.UserTokens(ctx(t), "nobody", now); err != nil || len(ts) != 0 {
		t.Errorf("UserTokens(nobody) = %v, %v; want none", ts, err)
	}
}

// testTouchTokens: a use is recorded, slides the expiry up to the maximum
// counted from creation, never revives an expired token and never moves
// the last use back; a use no store can hold fails the call.
func testTouchTokens(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice")
	now := time.Now()
	const idle, max = 10 * time.Hour, 30 * time.Hour
	for _, h := range []string{"t1", "t2", "gone"} {
		exp := now.Add(idle)
		if h == "gone" {
			exp = now.Add(-time.Second)
		}
		if err := s.CreateToken(ctx(t), []byte(h), "alice", exp); err != nil {
			t.Fatal(err)
		}
	}
	token := func(h string) storage.Token {
		t.Helper()
		ts, err := s.UserTokens(ctx(t), "alice", now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range ts {
			if string(tok.Hash) == h {
				return tok
			}
		}
		t.Fatalf("token %s not found", h)
		return storage.Token{}
	}
	near := func(what string, got, want time.Time) {
		t.Helper()
		if d := got.Sub(want); d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	created := token("t1").CreatedAt

	use1 := now.Add(5 * time.Hour)
	err := s.TouchTokens(ctx(t), []storage.TokenUse{
		{Hash: []byte("t1"), At: use1, Addr: "192.0.2.1", Agent: "app/1.0", Client: ""},
		{Hash: []byte("t2"), At: use1, Addr: "192.0.2.2", Client: "alice/phone"},
		{Hash: []byte("gone"), At: use1},    // expired: stays expired
		{Hash: []byte("unknown"), At: use1}, // skipped
	}, idle, max)
	if err != nil {
		t.Fatalf("TouchTokens: %v", err)
	}
	t1 := token("t1")
	near("t1's last use", t1.LastUsedAt, use1)
	near("t1's expiry after a use", t1.ExpiresAt, use1.Add(idle))
	if t1.LastAddr != "192.0.2.1" || t1.LastAgent != "app/1.0" || t1.LastClient != "" {
		t.Errorf("t1's last use from %q %q %q", t1.LastAddr, t1.LastAgent, t1.LastClient)
	}
	if t2 := token("t2"); t2.LastAddr != "192.0.2.2" || t2.LastClient != "alice/phone" {
		t.Errorf("t2's last use from %q, client %q", t2.LastAddr, t2.LastClient)
	}
	if u, err := s.TokenUser(ctx(t), []byte("gone"), use1); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("an expired token after a use: TokenUser = %q, %v; want ErrNotFound", u, err)
	}

	// Near the maximum, the expiry stops at creation + max.
	use2 := created.Add(max - 8*time.Hour) // before the expiry the 14h use gave (24h)
	if err := s.TouchTokens(ctx(t), []storage.TokenUse{{Hash: []byte("t1"), At: now.Add(9 * time.Hour)},
		{Hash: []byte("t1"), At: now.Add(14 * time.Hour)}}, idle, max); err != nil {
		t.Fatal(err)
	}
	near("t1's last use, the later of two", token("t1").LastUsedAt, now.Add(14*time.Hour))
	if err := s.TouchTokens(ctx(t), []storage.TokenUse{{Hash: []byte("t1"), At: use2}}, idle, max); err != nil {
		t.Fatal(err)
	}
	near("t1's expiry near the maximum", token("t1").ExpiresAt, created.Add(max))
	if u, err := s.TokenUser(ctx(t), []byte("t1"), created.Add(max-time.Second)); err != nil || u != "alice" {
		t.Errorf("TokenUser just before the maximum = %q, %v", u, err)
	}
	if _, err := s.TokenUser(ctx(t), []byte("t1"), created.Add(max)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("TokenUser at the maximum: %v, want ErrNotFound", err)
	}

	// An older use does not move the last use back.
	if err := s.TouchTokens(ctx(t), []storage.TokenUse{{Hash: []byte("t1"), At: use1, Addr: "198.51.100.9"}}, idle, max); err != nil {
		t.Fatal(err)
	}
	if t1 := token("t1"); !t1.LastUsedAt.After(use1) || t1.LastAddr == "198.51.100.9" {
		t.Errorf("an older use moved the last use back: %+v", t1)
	}

	// A use no store can hold fails the call, and writes nothing.
	bad := []storage.TokenUse{{Hash: []byte("t2"), At: use2, Addr: "x"}, {Hash: []byte("t2"), At: use2, Agent: "a\x00b"}}
	if err := s.TouchTokens(ctx(t), bad, idle, max); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("TouchTokens with a NUL in the agent: %v, want ErrInvalid", err)
	}
	if t2 := token("t2"); t2.LastAddr != "192.0.2.2" {
		t.Errorf("a refused call wrote a use: %+v", t2)
	}
	if err := s.TouchTokens(ctx(t), nil, idle, max); err != nil {
		t.Errorf("TouchTokens(nil): %v", err)
	}
}

func testValidTokens(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	now := time.Now()
	for _, tok := range []struct {
		hash, user string
		ttl        time.Duration
	}{{"a", "alice", time.Hour}, {"b", "bob", time.Hour}, {"x", "alice", -time.Second}} {
		if err := s.CreateToken(ctx(t), []byte(tok.hash), tok.user, now.Add(tok.ttl)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ValidTokens(ctx(t), [][]byte{[]byte("a"), []byte("b"), []byte("x"), []byte("unknown")}, now)
	if err != nil {
		t.Fatalf("ValidTokens: %v", err)
	}
	wantHashes(t, "ValidTokens", got, "a", "b")
	if got, err := s.ValidTokens(ctx(t), nil, now); err != nil || len(got) != 0 {
		t.Errorf("ValidTokens(nil) = %q, %v", got, err)
	}
	// Many at once.
	var many [][]byte
	for i := range 1200 {
		many = append(many, []byte{byte(i), byte(i >> 8), 'k'})
	}
	many = append(many, []byte("b"))
	if got, err := s.ValidTokens(ctx(t), many, now); err != nil || len(got) != 1 || !bytes.Equal(got[0], []byte("b")) {
		t.Errorf("ValidTokens of 1201 hashes = %q, %v; want b", got, err)
	}
}

func testDeleteUserTokens(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	now := time.Now()
	for _, tok := range []struct{ hash, user string }{{"a1", "alice"}, {"a2", "alice"}, {"a3", "alice"}, {"b1", "bob"}} {
		if err := s.CreateToken(ctx(t), []byte(tok.hash), tok.user, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.DeleteUserTokens(ctx(t), "alice", []byte("a2"))
	if err != nil {
		t.Fatalf("DeleteUserTokens: %v", err)
	}
	wantHashes(t, "deleted but a2", got, "a1", "a3")
	if u, err := s.TokenUser(ctx(t), []byte("a2"), now); err != nil || u != "alice" {
		t.Errorf("the kept token: %q, %v", u, err)
	}
	if u, err := s.TokenUser(ctx(t), []byte("b1"), now); err != nil || u != "bob" {
		t.Errorf("another user's token: %q, %v", u, err)
	}
	got, err = s.DeleteUserTokens(ctx(t), "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantHashes(t, "deleted all", got, "a2")
	if got, err := s.DeleteUserTokens(ctx(t), "nobody", nil); err != nil || len(got) != 0 {
		t.Errorf("DeleteUserTokens(nobody) = %q, %v", got, err)
	}
}

func testSetPassword(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice")
	now := time.Now()
	for _, h := range []string{"a1", "a2", "a3"} {
		if err := s.CreateToken(ctx(t), []byte(h), "alice", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.SetPassword(ctx(t), "alice", "new-hash", []byte("a3"))
	if err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	wantHashes(t, "revoked by SetPassword", got, "a1", "a2")
	if u, err := s.GetUser(ctx(t), "alice"); err != nil || u.PasswordHash != "new-hash" {
		t.Errorf("GetUser after SetPassword = %+v, %v", u, err)
	}
	if _, err := s.TokenUser(ctx(t), []byte("a3"), now); err != nil {
		t.Errorf("the kept token: %v", err)
	}
	if got, err := s.SetPassword(ctx(t), "alice", "newer-hash", nil); err != nil || len(got) != 1 {
		t.Errorf("SetPassword keeping nothing = %q, %v; want a3 revoked", got, err)
	}
	if _, err := s.SetPassword(ctx(t), "nobody", "h", nil); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetPassword(nobody): %v, want ErrNotFound", err)
	}
	if _, err := s.SetPassword(ctx(t), "alice", "bad\x00hash", nil); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("SetPassword with a NUL: %v, want ErrInvalid", err)
	}
}

// testDeleteUser: the account's data goes, its tombstone stays; what it
// sent to others stays, attributed to it; it cannot come back.
func testDeleteUser(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol")
	c := ctx(t)
	now := time.Now()
	for _, tok := range []struct{ hash, user string }{{"a1", "alice"}, {"a2", "alice"}, {"b1", "bob"}} {
		if err := s.CreateToken(c, []byte(tok.hash), tok.user, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// alice and bob talk; alice is in a group with bob and carol.
	toBob, _, err := s.Append(c, dm("alice", "bob", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Append(c, dm("bob", "alice", "c2")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateGroup(c, storage.Group{ID: "g1", Name: "G", Owner: "bob", Members: []storage.Member{
		{User: "bob", Role: storage.RoleOwner}, {User: "alice", Role: storage.RoleMember}, {User: "carol", Role: storage.RoleMember}}}); err != nil {
		t.Fatal(err)
	}
	inGroup, _, err := s.Append(c, storage.Message{ID: msgID(), From: "alice", To: "g1", TS: now.UnixMilli(), Type: protocol.TypeMsg,
		Data: []byte(`{"text":"hi all"}`), Inboxes: []string{"g/g1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCursors(c, []storage.Cursor{{ClientID: "alice/phone", Inbox: "u/alice", Seq: 1},
		{ClientID: "alice/phone", Inbox: "g/g1", Seq: 1}, {ClientID: "alice", Inbox: "u/alice", Seq: 1},
		{ClientID: "bob/phone", Inbox: "u/bob", Seq: 1}, {ClientID: "alice2/phone", Inbox: "u/alice2", Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetReadCursor(c, storage.ReadCursor{User: "alice", Inbox: "u/alice", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPushDevice(c, storage.PushDevice{Token: "push-alice", User: "alice", Platform: "fcm", Session: []byte("a1")}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPushDevice(c, storage.PushDevice{Token: "push-alice-old", User: "alice", Platform: "fcm"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPresencePrivacy(c, "alice", "nobody"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLastSeen(c, map[string]time.Time{"alice": now}); err != nil {
		t.Fatal(err)
	}

	at := time.Now()
	revoked, err := s.DeleteUser(c, "alice", at)
	if err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	wantHashes(t, "DeleteUser's revoked tokens", revoked, "a1", "a2")

	// The tombstone.
	u, err := s.GetUser(c, "alice")
	if err != nil || !u.Deleted() || u.Name != storage.DeletedUserName || u.PasswordHash != "" {
		t.Fatalf("GetUser after DeleteUser = %+v, %v; want the tombstone", u, err)
	}
	if d := u.DeletedAt.Sub(at); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("DeletedAt = %v, want %v", u.DeletedAt, at)
	}
	if u, err := s.GetUser(c, "bob"); err != nil || u.Deleted() {
		t.Errorf("bob after alice's deletion: %+v, %v", u, err)
	}
	// Its data is gone.
	if _, err := s.TokenUser(c, []byte("a1"), now); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("alice's token after DeleteUser: %v", err)
	}
	if _, err := s.LastSeq(c, "u/alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("alice's inbox after DeleteUser: %v, want ErrNotFound", err)
	}
	if es, err := s.Read(c, "u/alice", 0, 10); err != nil || len(es) != 0 {
		t.Errorf("alice's entries after DeleteUser: %d, %v", len(es), err)
	}
	for _, cur := range []storage.Cursor{{ClientID: "alice/phone", Inbox: "u/alice"}, {ClientID: "alice/phone", Inbox: "g/g1"}, {ClientID: "alice", Inbox: "u/alice"}} {
		if _, err := s.GetCursor(c, cur.ClientID, cur.Inbox); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("cursor %s %s after DeleteUser: %v", cur.ClientID, cur.Inbox, err)
		}
	}
	for _, cur := range []storage.Cursor{{ClientID: "bob/phone", Inbox: "u/bob"}, {ClientID: "alice2/phone", Inbox: "u/alice2"}} {
		if _, err := s.GetCursor(c, cur.ClientID, cur.Inbox); err != nil {
			t.Errorf("another user's cursor %s after DeleteUser: %v", cur.ClientID, err)
		}
	}
	if seq, err := s.GetReadCursor(c, "alice", "u/alice", ""); err != nil || seq != 0 {
		t.Errorf("alice's read marker after DeleteUser: %d, %v", seq, err)
	}
	if ds, err := s.PushDevices(c, "alice"); err != nil || len(ds) != 0 {
		t.Errorf("alice's push tokens after DeleteUser: %v, %v", ds, err)
	}
	if p, err := s.PresencePrivacy(c, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("alice's presence privacy after DeleteUser: %q, %v; want ErrNotFound (nobody sees a deleted user)", p, err)
	}
	if seen, err := s.LastSeen(c, []string{"alice"}); err != nil || len(seen) != 0 {
		t.Errorf("alice's last seen after DeleteUser: %v, %v", seen, err)
	}

	// What it sent to others stays, attributed to it.
	es, err := s.Read(c, "u/bob", 0, 10)
	if err != nil || len(es) != 2 || es[0].ID != toBob[0].ID || es[0].From != "alice" {
		t.Errorf("bob's inbox after alice's deletion: %+v, %v; want alice's message first", es, err)
	}
	if es, err := s.Read(c, "g/g1", 0, 10); err != nil || len(es) != 1 || es[0].ID != inGroup[0].ID {
		t.Errorf("the group's inbox after alice's deletion: %+v, %v", es, err)
	}
	// Its membership ended as a removal at the group's last seq.
	m, err := s.GetMembership(c, "g1", "alice")
	if err != nil || m.Current || m.RemovedSeq != inGroup[0].Seq {
		t.Errorf("alice's membership after DeleteUser = %+v, %v; want removed at %d", m, err, inGroup[0].Seq)
	}
	if g, err := s.GetGroup(c, "g1"); err != nil || len(g.Members) != 2 {
		t.Errorf("group after alice's deletion: %+v, %v; want bob and carol", g, err)
	}

	// It cannot come back: no token, no group, no message, no new account
	// under its id, no second deletion.
	if err := s.CreateToken(c, []byte("a3"), "alice", now.Add(time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CreateToken for a deleted user: %v, want ErrNotFound", err)
	}
	if err := s.AddMember(c, "g1", "alice", storage.RoleMember); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("AddMember of a deleted user: %v, want ErrNotFound", err)
	}
	err = s.CreateGroup(c, storage.Group{ID: "g2", Name: "G2", Owner: "bob", Members: []storage.Member{
		{User: "bob", Role: storage.RoleOwner}, {User: "alice", Role: storage.RoleMember}}})
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CreateGroup with a deleted user: %v, want ErrNotFound", err)
	}
	if _, _, err := s.Append(c, dm("bob", "alice", "c3")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a DM to a deleted user: %v, want ErrNotFound", err)
	}
	if err := s.CreateUser(c, storage.User{ID: "alice", Name: "Alice again", PasswordHash: "h"}); !errors.Is(err, storage.ErrExists) {
		t.Errorf("CreateUser with a deleted user's id: %v, want ErrExists", err)
	}
	if err := s.PutPushDevice(c, storage.PushDevice{Token: "push-again", User: "alice", Platform: "fcm"}, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PutPushDevice for a deleted user: %v, want ErrNotFound", err)
	}
	if _, err := s.SetPassword(c, "alice", "h", nil); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetPassword of a deleted user: %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteUser(c, "alice", at); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second DeleteUser: %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteUser(c, "nobody", at); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteUser(nobody): %v, want ErrNotFound", err)
	}
	// bob's token and data are untouched.
	if u, err := s.TokenUser(c, []byte("b1"), now); err != nil || u != "bob" {
		t.Errorf("bob's token after alice's deletion: %q, %v", u, err)
	}
}
