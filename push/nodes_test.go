package push_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
	"github.com/parleychat/parley/storage/sqlite"
)

// nodeStores opens the stores of two nodes on one database: two Postgres
// stores (two pools) on one database, or the one embedded store, which
// only one process may own, shared. Both queue push jobs.
var nodeStores = map[string]func(t *testing.T) (a, b storage.Store){
	"postgres": func(t *testing.T) (storage.Store, storage.Store) {
		url := pgtest.NewDatabase(t)
		open := func() storage.Store {
			s, err := postgres.Open(context.Background(), postgres.Config{URL: url, PushJobs: true}, testLogger(t))
			if err != nil {
				t.Fatalf("open postgres: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open()
	},
	"sqlite": func(t *testing.T) (storage.Store, storage.Store) {
		s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "parley.db"), PushJobs: true}, testLogger(t))
		if err != nil {
			t.Fatalf("open sqlite: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s, s
	},
}

// TestAcknowledgedOnAnotherNode: bob's device acknowledges a DM and a group
// message on node A; node B, which never heard of it, claims the push jobs
// and pushes neither to bob, while dave (a DM he did not acknowledge) and
// carol (the group message) get theirs.
func TestAcknowledgedOnAnotherNode(t *testing.T) {
	for name, open := range nodeStores {
		t.Run(name, func(t *testing.T) {
			a, b := open(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, u := range []string{"alice", "bob", "carol", "dave"} {
				if err := a.CreateUser(ctx, storage.User{ID: u, Name: "User " + u, PasswordHash: "h"}); err != nil {
					t.Fatal(err)
				}
				if u != "alice" {
					if err := a.PutPushDevice(ctx, storage.PushDevice{Token: "t-" + u, User: u, Platform: "fcm"}, 0); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := a.CreateGroup(ctx, storage.Group{ID: "team", Name: "Team", Owner: "alice", Members: []storage.Member{
				{User: "alice", Role: storage.RoleOwner}, {User: "bob", Role: storage.RoleMember},
				{User: "carol", Role: storage.RoleMember}}}); err != nil {
				t.Fatal(err)
			}
			// Sent ten seconds ago: due on B (grace 1s), never on A (1h).
			sent := time.Now().Add(-10 * time.Second).UnixMilli()
			msg := func(to string, inboxes ...string) storage.Message {
				m := storage.Message{ID: uuid.NewString(), From: "alice", To: to, TS: sent, Type: protocol.TypeMsg,
					Data: protocol.TextBody("to " + to), Inboxes: inboxes}
				if _, _, err := a.Append(ctx, m); err != nil {
					t.Fatal(err)
				}
				return m
			}
			toBob := msg("bob", "u/bob", "u/alice")
			msg("dave", "u/dave", "u/alice")
			toTeam := msg("team", "g/team")

			// Node A sees bob's device acknowledge both and records it.
			regA := prometheus.NewRegistry()
			recA := &recorder{}
			nodeA := push.NewService(push.ServiceConfig{Grace: time.Hour, Poll: 10 * time.Millisecond,
				AckFlush: 10 * time.Millisecond, Registry: regA}, a, recA, testLogger(t).With("node", "a"))
			nodeA.Start(ctx)
			defer nodeA.Close()
			nodeA.Delivered("bob", "u/bob", toBob.ID)
			nodeA.Delivered("bob", "g/team", toTeam.ID)
			testwait.Until(t, 5*time.Second, "node A to record both acknowledgements", func() bool {
				return metric(t, regA, "parley_push_acks_recorded_total", "") == 2
			})

			// Node B claims the jobs.
			recB := &recorder{}
			nodeB := push.NewService(push.ServiceConfig{Grace: time.Second, Poll: 10 * time.Millisecond}, b, recB,
				testLogger(t).With("node", "b"))
			nodeB.Start(ctx)
			defer nodeB.Close()
			testwait.Until(t, 10*time.Second, "node B to empty the queue", func() bool {
				n, _, err := b.CountPushJobs(ctx)
				return err == nil && n == 0
			})
			nodeB.Close()

			var tokens []string
			for _, s := range recB.all() {
				tokens = append(tokens, s.token)
			}
			slices.Sort(tokens)
			if want := []string{"t-carol", "t-dave"}; !slices.Equal(tokens, want) {
				t.Errorf("node B pushed to %q, want %q: bob acknowledged on node A", tokens, want)
			}
			if got := recA.all(); len(got) != 0 {
				t.Errorf("node A pushed %+v, want nothing (its grace is an hour)", got)
			}
		})
	}
}
