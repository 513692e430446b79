package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/parleychat/parley/storage"
)

func presenceTests() map[string]func(t *testing.T, s storage.Store) {
	return map[string]func(t *testing.T, s storage.Store){
		"last seen":        testLastSeen,
		"presence privacy": testPresencePrivacy,
	}
}

func testLastSeen(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice", "bob", "carol")
	if got, err := s.LastSeen(ctx(t), []string{"alice", "bob"}); err != nil || len(got) != 0 {
		t.Fatalf("LastSeen before any = %v, %v; want none", got, err)
	}
	t1 := time.Now().Truncate(time.Millisecond)
	t0 := t1.Add(-time.Hour)
	if err := s.SetLastSeen(ctx(t), map[string]time.Time{"alice": t1, "bob": t0, "nobody": t1}); err != nil {
		t.Fatalf("SetLastSeen (an unknown user among them): %v", err)
	}
	// Never moving back; carol's privacy row (no last seen yet) is not a time.
	if err := s.SetLastSeen(ctx(t), map[string]time.Time{"alice": t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPresencePrivacy(ctx(t), "carol", storage.PrivacyNobody); err != nil {
		t.Fatal(err)
	}
	got, err := s.LastSeen(ctx(t), []string{"alice", "bob", "carol", "nobody", "alice"})
	if err != nil {
		t.Fatalf("LastSeen: %v", err)
	}
	if len(got) != 2 || !got["alice"].Equal(t1) || !got["bob"].Equal(t0) {
		t.Fatalf("LastSeen = %v; want alice %v, bob %v", got, t1, t0)
	}
	// A later time moves it on; privacy is kept.
	t2 := t1.Add(time.Minute)
	if err := s.SetLastSeen(ctx(t), map[string]time.Time{"alice": t2, "carol": t2}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.LastSeen(ctx(t), []string{"alice", "carol"})
	if !got["alice"].Equal(t2) || !got["carol"].Equal(t2) {
		t.Fatalf("LastSeen after moving on = %v; want %v for both", got, t2)
	}
	if p, _ := s.PresencePrivacy(ctx(t), "carol"); p != storage.PrivacyNobody {
		t.Fatalf("carol's privacy became %q after SetLastSeen", p)
	}
	if got, err := s.LastSeen(ctx(t), nil); err != nil || len(got) != 0 {
		t.Fatalf("LastSeen(nil) = %v, %v", got, err)
	}
}

func testPresencePrivacy(t *testing.T, s storage.Store) {
	mustUser(t, s, "alice")
	if p, err := s.PresencePrivacy(ctx(t), "alice"); err != nil || p != storage.PrivacyEveryone {
		t.Fatalf("default privacy = %q, %v; want everyone", p, err)
	}
	if err := s.SetLastSeen(ctx(t), map[string]time.Time{"alice": time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{storage.PrivacyContacts, storage.PrivacyNobody, storage.PrivacyEveryone} {
		if err := s.SetPresencePrivacy(ctx(t), "alice", p); err != nil {
			t.Fatalf("SetPresencePrivacy(%s): %v", p, err)
		}
		if got, err := s.PresencePrivacy(ctx(t), "alice"); err != nil || got != p {
			t.Fatalf("PresencePrivacy = %q, %v; want %q", got, err, p)
		}
	}
	if got, _ := s.LastSeen(ctx(t), []string{"alice"}); got["alice"].IsZero() {
		t.Fatal("setting privacy lost the last-seen time")
	}
	if err := s.SetPresencePrivacy(ctx(t), "alice", "friends"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SetPresencePrivacy(friends): err = %v; want an invalid-value error", err)
	}
	if err := s.SetPresencePrivacy(ctx(t), "nobody", storage.PrivacyNobody); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SetPresencePrivacy of an unknown user: err = %v; want ErrNotFound", err)
	}
	if _, err := s.PresencePrivacy(ctx(t), "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("PresencePrivacy of an unknown user: err = %v; want ErrNotFound", err)
	}
}
