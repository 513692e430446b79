package storetest

import (
	"errors"
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
		"push devices":  testPushDevices,
		"push settings": testPushSettings,
		"push jobs":     testPushJobs,
	}
}

func testPushDevices(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	if err := s.PutPushDevice(ctx(t), storage.PushDevice{Token: "t1", User: "nobody", Platform: "fcm"}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("PutPushDevice for an unknown user = %v, want ErrNotFound", err)
	}
	for _, d := range []storage.PushDevice{
		{Token: "t1", User: "alice", Platform: "apns", Environment: "sandbox", Device: "alice/phone"},
		{Token: "t2", User: "alice", Platform: "fcm", Device: "alice/tablet"},
		{Token: "t1", User: "alice", Platform: "apns", Environment: "production", Device: "alice/phone"}, // refresh
	} {
		if err := s.PutPushDevice(ctx(t), d); err != nil {
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
	// A token moves to the user who registers it last.
	if err := s.PutPushDevice(ctx(t), storage.PushDevice{Token: "t2", User: "bob", Platform: "fcm"}); err != nil {
		t.Fatal(err)
	}
	if ds, _ := s.PushDevices(ctx(t), "alice"); len(ds) != 1 || ds[0].Token != "t1" {
		t.Fatalf("alice's devices after the move = %+v", ds)
	}
	if err := s.DeletePushDevice(ctx(t), "alice", "t2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleting another user's token = %v, want ErrNotFound", err)
	}
	if err := s.DeletePushDevice(ctx(t), "bob", "t2"); err != nil {
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
	if err := s.PutPushDevice(ctx(t), storage.PushDevice{Token: "t", User: "alice", Platform: "fcm"}); err != nil {
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
