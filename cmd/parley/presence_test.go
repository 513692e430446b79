package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
	"github.com/parleychat/parley/storage/sqlite"
)

// TestKill9Presence: parley is killed with SIGKILL while alice is online.
// After the restart nobody is online, and alice's last_seen is from before
// the crash (written when she connected), on p/alice and in the HTTP API.
func TestKill9Presence(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.NewDatabase(t)
		testKill9Presence(t, "PARLEY_DATABASE_URL="+url, func(ctx context.Context) (storage.Store, error) {
			return postgres.Open(ctx, postgres.Config{URL: url, Writers: 1}, nil)
		})
	})
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "parley.db")
		testKill9Presence(t, "PARLEY_DATABASE_PATH="+path, func(ctx context.Context) (storage.Store, error) {
			return sqlite.Open(ctx, sqlite.Config{Path: path, Readers: 1}, nil)
		})
	})
}

func testKill9Presence(t *testing.T, storeEnv string, open func(ctx context.Context) (storage.Store, error)) {
	c := startChild(t, storeEnv)
	n := c.node(t)
	at, bt := n.User("alice"), n.User("bob")
	before := time.Now()
	n.MustV5("alice", at, "alice", brokertest.V5Options{})
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "p/alice", 1)
	bob.In.WaitFor(t, 10*time.Second, "alice online", func(ms []brokertest.Msg) bool {
		return len(ms) > 0 && presenceOf(t, ms[len(ms)-1]).Status == protocol.StatusOnline
	})

	// Wait, in the store itself, for the last_seen written on arrival.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var stored time.Time
	for stored.IsZero() {
		seen, err := st.LastSeen(ctx, []string{"alice"})
		if err != nil {
			t.Fatalf("LastSeen: %v", err)
		}
		stored = seen["alice"]
		if stored.IsZero() {
			time.Sleep(50 * time.Millisecond)
		}
	}
	st.Close()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.exited
	killed := time.Now()

	n2 := startChild(t, storeEnv).node(t)
	var out struct{ Users []protocol.Presence }
	if code := n2.HTTPDo("GET", "/v1/presence?users=alice,bob", bt, nil, &out); code != 200 {
		t.Fatalf("GET /v1/presence: %d", code)
	}
	alice := out.Users[0]
	if alice.Status != protocol.StatusOffline || alice.LastSeen != stored.UnixMilli() ||
		alice.LastSeen < before.UnixMilli() || alice.LastSeen > killed.UnixMilli() {
		t.Fatalf("alice after the crash %+v; want offline, last seen at %d", alice, stored.UnixMilli())
	}
	if out.Users[1].Status != protocol.StatusOffline {
		t.Fatalf("bob after the crash %+v; want offline (he has not reconnected)", out.Users[1])
	}
	bob = n2.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "p/alice", 1)
	got := bob.In.WaitN(t, 1, "")
	if p := presenceOf(t, got[0]); p != alice {
		t.Fatalf("p/alice after the crash %+v, want %+v", p, alice)
	}
}

func presenceOf(t *testing.T, m brokertest.Msg) protocol.Presence {
	t.Helper()
	var p protocol.Presence
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		t.Fatalf("presence on %s: %q: %v", m.Topic, m.Payload, err)
	}
	return p
}
