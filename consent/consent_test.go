package consent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/sqlite"
)

// newService returns a Service on a fresh embedded store with users
// alice, bob, carol and dave, and the store itself (another node's view).
func newService(t *testing.T, cfg Config) (*Service, *sqlite.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "parley.db")}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		if err := st.CreateUser(ctx, storage.User{ID: u, Name: u, PasswordHash: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	return New(cfg, st), st
}

func TestBlockedFollowsChanges(t *testing.T) {
	ctx := context.Background()
	var changed [][]string
	s, st := newService(t, Config{TTL: time.Minute, Changed: func(users ...string) { changed = append(changed, users) }})
	now := time.Now()
	s.now = func() time.Time { return now }
	if b, err := s.Blocked(ctx, "bob", "alice"); err != nil || b {
		t.Fatalf("Blocked before any block = %v, %v", b, err)
	}
	// A change through the Service applies at once and is reported.
	if err := s.Block(ctx, "bob", "alice"); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Blocked(ctx, "bob", "alice"); !b {
		t.Fatal("bob's block of alice not seen at once")
	}
	if b, _ := s.Blocked(ctx, "alice", "bob"); b {
		t.Fatal("a block is one way")
	}
	if !slices.EqualFunc(changed, [][]string{{"bob", "alice"}}, slices.Equal) {
		t.Fatalf("Changed calls %v; want [[bob alice]]", changed)
	}
	// A change made elsewhere (another node, straight in the store) is seen
	// once forgotten (the cluster event), or once the TTL has passed.
	if err := st.Unblock(ctx, "bob", "alice"); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Blocked(ctx, "bob", "alice"); !b {
		t.Fatal("the cached list was not used")
	}
	s.Forget("bob")
	if b, _ := s.Blocked(ctx, "bob", "alice"); b {
		t.Fatal("Forget did not drop the cached list")
	}
	if err := st.Block(ctx, "bob", "carol", now); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if b, _ := s.Blocked(ctx, "bob", "carol"); !b {
		t.Fatal("a list older than the TTL was used")
	}
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, Config{})
	for _, err := range []error{
		s.Block(ctx, "dave", "alice"),
		s.SetGroupAdds(ctx, "bob", storage.GroupAddsContacts),
		s.SetGroupAdds(ctx, "carol", storage.GroupAddsNobody),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.RefusedAdds(ctx, "alice", []string{"dave", "carol", "bob", "alice", "nobody"})
	if err != nil || !slices.Equal(got, []string{"bob", "carol", "dave"}) {
		t.Fatalf("RefusedAdds = %v, %v; want bob, carol, dave", got, err)
	}
	if err := s.PutContact(ctx, "bob", "alice"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.RefusedAdds(ctx, "alice", []string{"bob"}); len(got) != 0 {
		t.Fatalf("bob lists alice, yet refuses her: %v", got)
	}
	for _, c := range []struct {
		err  error
		want error
	}{
		{s.Block(ctx, "alice", "alice"), ErrSelf},
		{s.PutContact(ctx, "alice", "alice"), ErrSelf},
		{s.Block(ctx, "alice", "Not An Id"), ErrInvalidUser},
		{s.Block(ctx, "alice", "nobody"), storage.ErrNotFound},
		{s.SetGroupAdds(ctx, "alice", "friends"), ErrInvalidSetting},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("got %v, want %v", c.err, c.want)
		}
	}
}
