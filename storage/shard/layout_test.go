package shard_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
	"github.com/parleychat/parley/storage/shard"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// newShard returns a fresh database with Parley's schema, and the store on
// it.
func newShard(t *testing.T) (*pgxpool.Pool, *postgres.Store) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	st, err := postgres.Open(ctx(t), postgres.Config{URL: url, PushJobs: true}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pool, err := pgxpool.New(ctx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, st
}

func dbs(pools ...*pgxpool.Pool) []shard.DB {
	out := make([]shard.DB, len(pools))
	for i, p := range pools {
		out[i] = p
	}
	return out
}

func TestPrepare(t *testing.T) {
	a, _ := newShard(t)
	b, _ := newShard(t)
	c, _ := newShard(t)
	m, err := shard.Prepare(ctx(t), dbs(a, b, c))
	if err != nil {
		t.Fatalf("Prepare of a new deployment: %v", err)
	}
	if counts := m.Counts(3); counts[0] != 1366 || counts[1] != 1365 || counts[2] != 1365 {
		t.Fatalf("a new deployment's map: %v buckets per shard, want them even", counts)
	}
	// Again, as every node does at start: the same map.
	if again, err := shard.Prepare(ctx(t), dbs(a, b, c)); err != nil || !slices.Equal(again, m) {
		t.Fatalf("Prepare again: %v (same map: %v)", err, slices.Equal(again, m))
	}
	// A list out of order, or one naming a database twice, is refused.
	for name, list := range map[string][]shard.DB{"reordered": dbs(b, a, c), "repeated": dbs(a, a, c)} {
		if _, err := shard.Prepare(ctx(t), list); !errors.Is(err, shard.ErrMisplaced) {
			t.Errorf("%s list: %v, want ErrMisplaced", name, err)
		}
	}
	// Shortened: the map names shard 2, which the list lacks.
	if _, err := shard.Prepare(ctx(t), dbs(a, b)); !errors.Is(err, shard.ErrMisplaced) {
		t.Errorf("a list without shard 2: %v, want ErrMisplaced", err)
	}
	// Another deployment's shard 0 listed as shard 3.
	other, _ := newShard(t)
	if _, err := shard.Prepare(ctx(t), dbs(other)); err != nil {
		t.Fatal(err)
	}
	if _, err := shard.Prepare(ctx(t), dbs(a, b, c, other)); !errors.Is(err, shard.ErrMisplaced) {
		t.Errorf("another deployment's database: %v, want ErrMisplaced", err)
	}
	// A new shard joins holding no bucket.
	d, _ := newShard(t)
	m4, err := shard.Prepare(ctx(t), dbs(a, b, c, d))
	if err != nil || !slices.Equal(m4, m) || m4.Counts(4)[3] != 0 {
		t.Fatalf("adding a shard: %v; map unchanged %v", err, slices.Equal(m4, m))
	}
}

// TestPrepareExistingStore: a single store that holds inboxes becoming
// sharded keeps every bucket on it, so that no inbox moves by itself.
func TestPrepareExistingStore(t *testing.T) {
	a, st := newShard(t)
	b, _ := newShard(t)
	if err := st.CreateUser(ctx(t), storage.User{ID: "alice", Name: "Alice", PasswordHash: "x"}); err != nil {
		t.Fatal(err)
	}
	m, err := shard.Prepare(ctx(t), dbs(a, b))
	if err != nil {
		t.Fatal(err)
	}
	if counts := m.Counts(2); counts[0] != shard.Buckets || counts[1] != 0 {
		t.Fatalf("map of an existing store: %v, want every bucket on shard 0", counts)
	}
}

func TestStatus(t *testing.T) {
	a, st := newShard(t)
	b, _ := newShard(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		if err := st.CreateUser(ctx(t), storage.User{ID: u, Name: u, PasswordHash: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Exec(ctx(t), "ANALYZE inboxes"); err != nil {
		t.Fatal(err)
	}
	m, err := shard.Prepare(ctx(t), dbs(a, b))
	if err != nil {
		t.Fatal(err)
	}
	got, err := shard.Status(ctx(t), dbs(a, b), m)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Buckets != shard.Buckets || got[0].Ranges != "0-4095" || got[0].Inboxes != 3 ||
		got[1].Buckets != 0 || got[1].Inboxes != 0 {
		t.Fatalf("Status = %+v", got)
	}
}
