package storetest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// invalidTests are the contract for inputs a store cannot hold: each fails
// alone with ErrInvalid (a bad request, not ErrUnavailable: retrying cannot
// help), and writes committed alongside it are stored as if it had never
// come. Bad and good writes are started together so that, in a
// group-commit store, they share batches.
func invalidTests() map[string]func(t *testing.T, s storage.Store) {
	return map[string]func(t *testing.T, s storage.Store){
		"append refuses what it cannot hold":      testAppendInvalid,
		"save cursors drops what it cannot hold":  testSaveCursorsInvalid,
		"push device refuses what it cannot hold": testPushDeviceInvalid,
		"create user refuses what it cannot hold": testCreateUserInvalid,
		"prune": testPrune,
	}
}

// LongKey returns a key of n random hex characters: longer than any store
// can index once n is past storage.MaxKeyBytes, and incompressible, so that
// Postgres cannot squeeze it into an index row (a repeated character would
// compress and fit).
func LongKey(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)[:n]
}

// wantInvalid fails the test unless err is a bad-request error: ErrInvalid,
// and neither ErrUnavailable nor ErrNotFound.
func wantInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrInvalid) || errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("%s: err = %v, want ErrInvalid (and not ErrUnavailable or ErrNotFound)", what, err)
	}
}

func testAppendInvalid(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol", "dave")
	bad := map[string]func(m *storage.Message){
		"NUL in cid":          func(m *storage.Message) { m.Cid = "c\x00" },
		"invalid UTF-8 cid":   func(m *storage.Message) { m.Cid = "c\xff" },
		"6,000-character cid": func(m *storage.Message) { m.Cid = LongKey(6000) },
		"NUL in conversation": func(m *storage.Message) { m.Conv = "u/\x00" },
		"NUL in type":         func(m *storage.Message) { m.Type = "msg\x00" },
	}
	const good = 50
	start := make(chan struct{})
	var wg sync.WaitGroup
	goodErrs := make([]error, good)
	for i := range good {
		wg.Go(func() {
			<-start
			_, _, goodErrs[i] = s.Append(ctx(t), dm("carol", "dave", fmt.Sprintf("g%d", i)))
		})
	}
	badErrs := map[string]error{}
	var mu sync.Mutex
	for name, spoil := range bad {
		wg.Go(func() {
			m := dm("alice", "bob", "b")
			spoil(&m)
			<-start
			_, _, err := s.Append(ctx(t), m)
			mu.Lock()
			badErrs[name] = err
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	for name, err := range badErrs {
		wantInvalid(t, "Append with "+name, err)
	}
	for i, err := range goodErrs {
		if err != nil {
			t.Errorf("good Append %d beside bad ones: %v", i, err)
		}
	}
	// Nothing of the bad messages was stored; every good one was, gapless.
	for _, inbox := range []string{"u/alice", "u/bob"} {
		if seq, err := s.LastSeq(ctx(t), inbox); err != nil || seq != 0 {
			t.Errorf("LastSeq(%s) = %d, %v; the refused messages left entries", inbox, seq, err)
		}
	}
	es, err := s.Read(ctx(t), "u/dave", 0, 2*good)
	if err != nil || len(es) != good {
		t.Fatalf("u/dave holds %d entries, %v; want %d", len(es), err, good)
	}
	for i, e := range es {
		if e.Seq != int64(i+1) {
			t.Fatalf("u/dave entry %d has seq %d: not gapless", i, e.Seq)
		}
	}
	// The refused cid "b" is not taken: the same message, made good, is new.
	if _, dup, err := s.Append(ctx(t), dm("alice", "bob", "b")); err != nil || dup {
		t.Fatalf("Append after the refused ones: dup=%v err=%v", dup, err)
	}
}

func testSaveCursorsInvalid(t *testing.T, s storage.Store) {
	long := LongKey(6000)
	err := s.SaveCursors(ctx(t), []storage.Cursor{
		{ClientID: "bob/phone", Inbox: "u/bob", Seq: 5},
		{ClientID: long, Inbox: "u/bob", Seq: 9},
		{ClientID: "bob/laptop", Inbox: "u/bob", Seq: 3},
		{ClientID: "bob/phone", Inbox: "g/\x00", Seq: 4},
		{ClientID: "carol/phone", Inbox: "u/carol", Seq: 7},
	})
	wantInvalid(t, "SaveCursors with bad rows", err)
	if err != nil && !strings.Contains(err.Error(), "dropped 2 ") {
		t.Errorf("SaveCursors error %q does not say that 2 cursors were dropped", err)
	}
	for _, c := range []storage.Cursor{
		{ClientID: "bob/phone", Inbox: "u/bob", Seq: 5},
		{ClientID: "bob/laptop", Inbox: "u/bob", Seq: 3},
		{ClientID: "carol/phone", Inbox: "u/carol", Seq: 7},
	} {
		if seq, err := s.GetCursor(ctx(t), c.ClientID, c.Inbox); err != nil || seq != c.Seq {
			t.Errorf("GetCursor(%s, %s) = %d, %v; want %d saved beside the bad rows", c.ClientID, c.Inbox, seq, err, c.Seq)
		}
	}
	if _, err := s.GetCursor(ctx(t), long, "u/bob"); !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("GetCursor of the dropped client id: err = %v, want ErrNotFound or ErrInvalid", err)
	}
	// Only bad rows: nothing saved, the same error.
	wantInvalid(t, "SaveCursors with only a bad row", s.SaveCursors(ctx(t), []storage.Cursor{{ClientID: long, Inbox: "u/bob", Seq: 1}}))
	// Good rows alone save as before.
	if err := s.SaveCursors(ctx(t), []storage.Cursor{{ClientID: "bob/phone", Inbox: "u/bob", Seq: 6}}); err != nil {
		t.Fatalf("SaveCursors after the bad rows: %v", err)
	}
}

func testPushDeviceInvalid(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob")
	bad := map[string]storage.PushDevice{
		"4,096-character token": {Token: LongKey(4096), User: "alice", Platform: "fcm"},
		"NUL in token":          {Token: "t\x00", User: "alice", Platform: "fcm"},
		"NUL in device":         {Token: "t-bad", User: "alice", Platform: "fcm", Device: "alice/\x00"},
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	const good = 20
	goodErrs := make([]error, good)
	for i := range good {
		wg.Go(func() {
			<-start
			goodErrs[i] = s.PutPushDevice(ctx(t), storage.PushDevice{Token: fmt.Sprintf("t%d", i), User: "bob", Platform: "apns"}, 0)
		})
	}
	var mu sync.Mutex
	badErrs := map[string]error{}
	for name, d := range bad {
		wg.Go(func() {
			<-start
			err := s.PutPushDevice(ctx(t), d, 0)
			mu.Lock()
			badErrs[name] = err
			mu.Unlock()
		})
	}
	// Appends share the writer with these writes in a group-commit store.
	appendErrs := make([]error, good)
	for i := range good {
		wg.Go(func() {
			<-start
			_, _, appendErrs[i] = s.Append(ctx(t), dm("bob", "alice", ""))
		})
	}
	close(start)
	wg.Wait()
	for name, err := range badErrs {
		wantInvalid(t, "PutPushDevice with "+name, err)
	}
	for i := range good {
		if goodErrs[i] != nil || appendErrs[i] != nil {
			t.Errorf("good writes %d beside bad tokens: PutPushDevice %v, Append %v", i, goodErrs[i], appendErrs[i])
		}
	}
	if ds, err := s.PushDevices(ctx(t), "alice"); err != nil || len(ds) != 0 {
		t.Errorf("alice's devices = %+v, %v; want none of the refused ones", ds, err)
	}
	if ds, err := s.PushDevices(ctx(t), "bob"); err != nil || len(ds) != good {
		t.Errorf("bob has %d devices, %v; want %d", len(ds), err, good)
	}
}

func testCreateUserInvalid(t *testing.T, s storage.Store) {
	for name, u := range map[string]storage.User{
		"6,000-character id": {ID: LongKey(6000), Name: "x", PasswordHash: "h"},
		"NUL in id":          {ID: "a\x00", Name: "x", PasswordHash: "h"},
		"NUL in name":        {ID: "eve", Name: "e\x00", PasswordHash: "h"},
	} {
		wantInvalid(t, "CreateUser with "+name, s.CreateUser(ctx(t), u))
	}
	if _, err := s.LastSeq(ctx(t), protocol.UserInbox("eve")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a refused user has an inbox: %v", err)
	}
}
