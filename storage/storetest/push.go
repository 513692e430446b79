package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// pushTests are the contract of storage.Push. The jobs test expects a store
// opened to queue push jobs (PushJobs in both stores' Config).
func pushTests() map[string]func(t *testing.T, s storage.Store) {
	return map[string]func(t *testing.T, s storage.Store){
		"push devices":                 testPushDevices,
		"push device take-over":        testPushDeviceTakeOver,
		"push devices go with session": testPushDevicesRevoked,
		"push device cap":              testPushDeviceCap,
		"push settings":                testPushSettings,
		"push jobs":                    testPushJobs,
		"push acks":                    testPushAcks,
	}
}

func testPushDevices(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	if err := s.PutPushDevice(ctx(t), storage.PushDevice{Token: "t1", User: "nobody", Platform: "fcm"}, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("PutPushDevice for an unknown user = %v, want ErrNotFound", err)
	}
	for _, d := range []storage.PushDevice{
		{Token: "t1", User: "alice", Platform: "apns", Environment: "sandbox", Device: "alice/phone"},
		{Token: "t2", User: "alice", Platform: "fcm", Device: "alice/tablet"},
		{Token: "t1", User: "alice", Platform: "apns", Environment: "production", Device: "alice/phone"}, // refresh
	} {
		if err := s.PutPushDevice(ctx(t), d, 0); err != nil {
			t.Fatalf("PutPushDevice(%+v): %v", d, err)
		}
	}
	ds, err := s.PushDevices(ctx(t), "alice")
	if err != nil || len(ds) != 2 {
		t.Fatalf("PushDevices = %+v, %v; want 2", ds, err)
	}
	byToken := map[string]storage.PushDevice{}
	for _, d := range ds {
		byToken[d.Token] = d
	}
	if d := byToken["t1"]; d.Environment != "production" || d.Platform != "apns" || d.User != "alice" || d.UpdatedAt.IsZero() {
		t.Fatalf("t1 = %+v", d)
	}
	// A token bound to no session stays with its user: another user cannot
	// take it, and cannot delete it.
	if err := s.PutPushDevice(ctx(t), storage.PushDevice{Token: "t2", User: "bob", Platform: "fcm"}, 0); !errors.Is(err, storage.ErrPushTokenTaken) {
		t.Fatalf("bob registers alice's token = %v, want ErrPushTokenTaken", err)
	}
	if ds, _ := s.PushDevices(ctx(t), "alice"); len(ds) != 2 {
		t.Fatalf("alice's devices after bob's attempt = %+v", ds)
	}
	if err := s.DeletePushDevice(ctx(t), "bob", "t2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleting another user's token = %v, want ErrNotFound", err)
	}
	if err := s.DeletePushDevice(ctx(t), "alice", "t2"); err != nil {
		t.Fatal(err)
	}
	// RemovePushToken keeps a token registered again after the provider's
	// verdict.
	if ok, err := s.RemovePushToken(ctx(t), "t1", time.Now().Add(-time.Hour)); err != nil || ok {
		t.Fatalf("RemovePushToken of a newer registration = %v, %v; want kept", ok, err)
	}
	if ok, err := s.RemovePushToken(ctx(t), "t1", time.Time{}); err != nil || !ok {
		t.Fatalf("RemovePushToken = %v, %v; want removed", ok, err)
	}
	if ok, err := s.RemovePushToken(ctx(t), "t1", time.Time{}); err != nil || ok {
		t.Fatalf("RemovePushToken again = %v, %v", ok, err)
	}
}

// mustTokens creates access tokens: hash → user, expiring after ttl
// (negative: already expired).
func mustTokens(t *testing.T, s storage.Store, ttl time.Duration, tokens map[string]string) {
	t.Helper()
	for hash, user := range tokens {
		if err := s.CreateToken(ctx(t), []byte(hash), user, time.Now().Add(ttl)); err != nil {
			t.Fatalf("CreateToken(%s): %v", hash, err)
		}
	}
}

// wantPushTokens checks a user's push tokens, least recently updated
// first, and the sessions that registered them ("" for none).
func wantPushTokens(t *testing.T, s storage.Store, user string, want ...[2]string) {
	t.Helper()
	ds, err := s.PushDevices(ctx(t), user)
	if err != nil {
		t.Fatalf("PushDevices(%s): %v", user, err)
	}
	got := make([][2]string, len(ds))
	for i, d := range ds {
		got[i] = [2]string{d.Token, string(d.Session)}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s's push tokens (token, session) = %q, want %q", user, got, want)
	}
}

// testPushDeviceTakeOver: a push token stays with the user whose live
// session registered it; the same user may register it again from any
// session; another user takes it once that session is gone.
func testPushDeviceTakeOver(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	mustTokens(t, s, time.Hour, map[string]string{"a1": "alice", "a2": "alice", "b1": "bob"})
	mustTokens(t, s, -time.Second, map[string]string{"a-old": "alice"})
	put := func(token, user, session string) error {
		t.Helper()
		return s.PutPushDevice(ctx(t), storage.PushDevice{Token: token, User: user, Platform: "apns", Session: []byte(session)}, 0)
	}
	if err := put("T", "alice", "a1"); err != nil {
		t.Fatal(err)
	}
	if err := put("T", "bob", "b1"); !errors.Is(err, storage.ErrPushTokenTaken) {
		t.Fatalf("bob takes alice's token = %v, want ErrPushTokenTaken", err)
	}
	wantPushTokens(t, s, "alice", [2]string{"T", "a1"})
	wantPushTokens(t, s, "bob")
	// alice again, from another session: allowed, bound to that one.
	if err := put("T", "alice", "a2"); err != nil {
		t.Fatalf("alice registers her token from another session: %v", err)
	}
	wantPushTokens(t, s, "alice", [2]string{"T", "a2"})
	if err := put("T", "bob", "b1"); !errors.Is(err, storage.ErrPushTokenTaken) {
		t.Fatalf("bob takes alice's token after her refresh = %v, want ErrPushTokenTaken", err)
	}
	// The session signs out: the token goes with it, and bob may have it.
	if err := s.DeleteToken(ctx(t), []byte("a2")); err != nil {
		t.Fatal(err)
	}
	wantPushTokens(t, s, "alice")
	if err := put("T", "bob", "b1"); err != nil {
		t.Fatalf("bob registers a token whose session signed out: %v", err)
	}
	wantPushTokens(t, s, "bob", [2]string{"T", "b1"})

	// A session that expired (and is not pruned yet) proves nothing.
	if err := put("E", "alice", "a-old"); err != nil {
		t.Fatal(err)
	}
	if err := put("E", "bob", "b1"); err != nil {
		t.Fatalf("bob registers a token whose session expired: %v", err)
	}
	wantPushTokens(t, s, "alice")

	// The session must be one of the user's tokens.
	for name, session := range map[string]string{"an unknown session": "nope", "another user's session": "a1"} {
		if err := put("X", "bob", session); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("PutPushDevice with %s = %v, want ErrNotFound", name, err)
		}
	}
	wantPushTokens(t, s, "bob", [2]string{"T", "b1"}, [2]string{"E", "b1"})
}

// testPushDevicesRevoked: revoking a session deletes the push tokens it
// registered, and only those.
func testPushDevicesRevoked(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	mustTokens(t, s, time.Hour, map[string]string{"a1": "alice", "a2": "alice", "a3": "alice", "b1": "bob"})
	for _, d := range []storage.PushDevice{
		{Token: "P1", User: "alice", Session: []byte("a1")},
		{Token: "P2", User: "alice", Session: []byte("a2")},
		{Token: "P3", User: "alice", Session: []byte("a3")},
		{Token: "P0", User: "alice"}, // registered before sessions were bound
		{Token: "Q1", User: "bob", Session: []byte("b1")},
	} {
		d.Platform = "fcm"
		if err := s.PutPushDevice(ctx(t), d, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Every session but a3's: P1 and P2 go.
	if _, err := s.DeleteUserTokens(ctx(t), "alice", []byte("a3")); err != nil {
		t.Fatal(err)
	}
	wantPushTokens(t, s, "alice", [2]string{"P3", "a3"}, [2]string{"P0", ""})
	// A password change keeping no session: P3 goes; P0, bound to no
	// session, stays with its user.
	if _, err := s.SetPassword(ctx(t), "alice", "new-hash", nil); err != nil {
		t.Fatal(err)
	}
	wantPushTokens(t, s, "alice", [2]string{"P0", ""})
	wantPushTokens(t, s, "bob", [2]string{"Q1", "b1"})
}

// testPushDeviceCap: past the cap, registering a token evicts the user's
// least recently updated others; a refresh counts as an update; other
// users are not affected.
func testPushDeviceCap(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	mustTokens(t, s, time.Hour, map[string]string{"a1": "alice", "b1": "bob"})
	put := func(user, session, token string, maxDevices int) {
		t.Helper()
		d := storage.PushDevice{Token: token, User: user, Platform: "fcm", Session: []byte(session)}
		if err := s.PutPushDevice(ctx(t), d, maxDevices); err != nil {
			t.Fatalf("PutPushDevice(%s, max %d): %v", token, maxDevices, err)
		}
	}
	put("bob", "b1", "B1", 3)
	for _, tok := range []string{"T1", "T2", "T3"} {
		put("alice", "a1", tok, 3)
	}
	wantPushTokens(t, s, "alice", [2]string{"T1", "a1"}, [2]string{"T2", "a1"}, [2]string{"T3", "a1"})
	put("alice", "a1", "T4", 3) // T1 goes
	wantPushTokens(t, s, "alice", [2]string{"T2", "a1"}, [2]string{"T3", "a1"}, [2]string{"T4", "a1"})
	put("alice", "a1", "T2", 3) // a refresh: nothing goes, T2 is now the newest
	wantPushTokens(t, s, "alice", [2]string{"T3", "a1"}, [2]string{"T4", "a1"}, [2]string{"T2", "a1"})
	put("alice", "a1", "T5", 3) // T3 goes
	wantPushTokens(t, s, "alice", [2]string{"T4", "a1"}, [2]string{"T2", "a1"}, [2]string{"T5", "a1"})
	put("alice", "a1", "T6", 0) // no cap
	wantPushTokens(t, s, "alice", [2]string{"T4", "a1"}, [2]string{"T2", "a1"}, [2]string{"T5", "a1"}, [2]string{"T6", "a1"})
	put("alice", "a1", "T4", 1) // only the token registered stays
	wantPushTokens(t, s, "alice", [2]string{"T4", "a1"})
	wantPushTokens(t, s, "bob", [2]string{"B1", "b1"})
}

func testPushSettings(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice")
	p, err := s.PushProfile(ctx(t), "alice")
	if err != nil || !p.Preview || len(p.Mutes) != 0 || len(p.Devices) != 0 {
		t.Fatalf("default profile = %+v, %v", p, err)
	}
	if err := s.SetPushPreview(ctx(t), "alice", false); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if err := s.SetPushMute(ctx(t), "alice", "u/bob", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPushMute(ctx(t), "alice", "g/team", until); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPushMute(ctx(t), "alice", "g/old", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPushDevice(ctx(t), storage.PushDevice{Token: "t", User: "alice", Platform: "fcm"}, 0); err != nil {
		t.Fatal(err)
	}
	p, err = s.PushProfile(ctx(t), "alice")
	if err != nil || p.Preview || len(p.Devices) != 1 {
		t.Fatalf("profile = %+v, %v", p, err)
	}
	now := time.Now()
	if !p.Muted("u/bob", now) || !p.Muted("g/team", now) || p.Muted("g/old", now) || p.Muted("u/carol", now) {
		t.Fatalf("mutes = %v", p.Mutes)
	}
	if !p.Mutes["g/team"].Equal(until) {
		t.Fatalf("g/team muted until %v, want %v", p.Mutes["g/team"], until)
	}
	if err := s.DeletePushMute(ctx(t), "alice", "u/bob"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePushMute(ctx(t), "alice", "u/nobody"); err != nil {
		t.Fatalf("unmuting what is not muted: %v", err)
	}
	if err := s.SetPushPreview(ctx(t), "alice", true); err != nil {
		t.Fatal(err)
	}
	if p, _ = s.PushProfile(ctx(t), "alice"); !p.Preview || p.Muted("u/bob", now) {
		t.Fatalf("profile after changes = %+v", p)
	}
}

func testPushJobs(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	past := time.Now().Add(-time.Minute).UnixMilli()
	m1 := dm("alice", "bob", "c1")
	m1.TS = past
	m2 := dm("alice", "bob", "c2") // not yet due, but coalesced with m1
	m3 := dm("bob", "bob", "")     // to oneself: no job
	typing := dm("alice", "bob", "")
	typing.Type = protocol.TypeTyping
	for _, m := range []storage.Message{m1, m2, m3, typing, m1} { // m1 again: a duplicate
		if _, _, err := s.Append(ctx(t), m); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if n, oldest, err := s.CountPushJobs(ctx(t)); err != nil || n != 2 || oldest != past {
		t.Fatalf("CountPushJobs = %d, %d, %v; want 2, %d", n, oldest, err, past)
	}
	now := time.Now()
	due := now.Add(-30 * time.Second).UnixMilli()
	js, err := s.ClaimPushJobs(ctx(t), due, now, now.Add(time.Minute), 10)
	if err != nil || len(js) != 2 {
		t.Fatalf("ClaimPushJobs = %+v, %v; want m1 and m2", js, err)
	}
	if j := js[0]; j.ID != m1.ID || j.Inbox != "u/bob" || j.Seq != 1 || j.From != "alice" || j.To != "bob" ||
		j.TS != past || string(j.Data) != `{"text":"hi"}` || js[1].ID != m2.ID || js[1].Seq != 2 {
		t.Fatalf("claimed %+v", js)
	}
	// Leased: nobody else claims them until the lease runs out.
	if js, err := s.ClaimPushJobs(ctx(t), now.UnixMilli(), now, now.Add(time.Minute), 10); err != nil || len(js) != 0 {
		t.Fatalf("claim while leased = %+v, %v", js, err)
	}
	later := now.Add(2 * time.Minute)
	if js, err := s.ClaimPushJobs(ctx(t), later.UnixMilli(), later, later.Add(time.Minute), 10); err != nil || len(js) != 2 {
		t.Fatalf("claim after the lease = %+v, %v", js, err)
	}
	if err := s.DeletePushJobs(ctx(t), []string{m1.ID, m2.ID, uuid.NewString()}); err != nil {
		t.Fatal(err)
	}
	if n, oldest, err := s.CountPushJobs(ctx(t)); err != nil || n != 0 || oldest != 0 {
		t.Fatalf("CountPushJobs after delete = %d, %d, %v", n, oldest, err)
	}
}

// testPushAcks: the claim of a job returns the users who acknowledged its
// message, whoever recorded it; recording is idempotent, keeps nothing for a
// message without a queued job, drops what no store can hold, and what it
// keeps goes with the job or, left over, with Prune.
func testPushAcks(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol", "dave")
	if err := s.CreateGroup(ctx(t), storage.Group{ID: "team", Name: "Team", Owner: "alice", Members: []storage.Member{
		{User: "alice", Role: storage.RoleOwner}, {User: "bob", Role: storage.RoleMember}, {User: "carol", Role: storage.RoleMember}}}); err != nil {
		t.Fatal(err)
	}
	toBob, toDave, toTeam := dm("alice", "bob", ""), dm("alice", "dave", ""), dm("alice", "team", "")
	toTeam.Inboxes = []string{protocol.GroupInbox("team")}
	for _, m := range []storage.Message{toBob, toDave, toTeam} {
		if _, _, err := s.Append(ctx(t), m); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	record := func(acks ...storage.PushAck) {
		t.Helper()
		if err := s.RecordPushAcks(ctx(t), acks); err != nil {
			t.Fatalf("RecordPushAcks(%+v): %v", acks, err)
		}
	}
	noJob := uuid.NewString()
	record(storage.PushAck{User: "bob", ID: toBob.ID}, storage.PushAck{User: "bob", ID: toTeam.ID},
		storage.PushAck{User: "bob", ID: toTeam.ID}, // twice in one batch: his phone and his laptop
		storage.PushAck{User: "carol", ID: noJob})   // no job: nothing to cancel, not kept
	record(storage.PushAck{User: "bob", ID: toBob.ID}) // again: not an error
	record()                                           // nothing: not an error

	// claim returns the acknowledging users of each claimed job, by id.
	now := time.Now()
	claim := func(at time.Time, want int) map[string][]string {
		t.Helper()
		js, err := s.ClaimPushJobs(ctx(t), at.UnixMilli(), at, at.Add(time.Minute), 10)
		if err != nil || len(js) != want {
			t.Fatalf("ClaimPushJobs = %+v, %v; want %d jobs", js, err, want)
		}
		acked := map[string][]string{}
		for _, j := range js {
			acked[j.ID] = slices.Sorted(slices.Values(j.Acked))
		}
		return acked
	}
	got := claim(now, 3)
	for _, c := range []struct {
		name, id string
		want     []string
	}{
		{"the DM bob acknowledged", toBob.ID, []string{"bob"}},
		{"the DM to dave, unacknowledged", toDave.ID, nil},
		{"the group message: bob only, carol and the sender still pushed", toTeam.ID, []string{"bob"}},
	} {
		if !slices.Equal(got[c.id], c.want) {
			t.Errorf("%s: Acked = %q, want %q", c.name, got[c.id], c.want)
		}
	}

	// A bad acknowledgement is dropped, the others are recorded; one
	// recorded while its job is leased shows in the next claim.
	err := s.RecordPushAcks(ctx(t), []storage.PushAck{{User: "dave", ID: "not-a-uuid"}, {User: "dave", ID: toDave.ID},
		{User: "bad\x00user", ID: toDave.ID}, {User: "carol", ID: toTeam.ID, At: now.Add(-48 * time.Hour)}})
	if !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("RecordPushAcks with bad ones = %v, want ErrInvalid", err)
	}
	later := now.Add(2 * time.Minute)
	got = claim(later, 3)
	if !slices.Equal(got[toDave.ID], []string{"dave"}) || !slices.Equal(got[toTeam.ID], []string{"bob", "carol"}) {
		t.Fatalf("after more acknowledgements: %q", got)
	}

	// Deleting a job deletes its acknowledgements; one recorded after its
	// job is gone is not kept.
	if err := s.DeletePushJobs(ctx(t), []string{toBob.ID}); err != nil {
		t.Fatal(err)
	}
	record(storage.PushAck{User: "bob", ID: toBob.ID})
	// Left: dave's (now) and bob's (now) and carol's (two days old) of
	// the jobs still queued. Keeping a day deletes carol's only.
	const day = 24 * time.Hour
	if p, err := s.Prune(ctx(t), storage.Retention{Now: now, PushAcks: day}); err != nil || p != (storage.Pruned{PushAcks: 1}) {
		t.Fatalf("Prune of a day's acknowledgements = %+v, %v; want 1 deleted", p, err)
	}
	later = later.Add(2 * time.Minute)
	got = claim(later, 2)
	if !slices.Equal(got[toDave.ID], []string{"dave"}) || !slices.Equal(got[toTeam.ID], []string{"bob"}) {
		t.Fatalf("after Prune: %q", got)
	}
	// Pruning them all a day later: had the deleted job kept its
	// acknowledgements, there would be three.
	if p, err := s.Prune(ctx(t), storage.Retention{Now: now.Add(day + time.Minute), PushAcks: day}); err != nil || p != (storage.Pruned{PushAcks: 2}) {
		t.Fatalf("Prune a day later = %+v, %v; want the 2 left", p, err)
	}
}
