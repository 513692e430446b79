package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
)

// TestDedupPerInboxInBatch: in one group commit, a cid reused for another
// recipient is a new message, repeats of each (sender, inbox, cid) get the
// first copies (whether stored in this batch or before it), and the same
// cid from another sender is its own message. The writer is held on a row
// lock while the batch queues, in order, so that it is one batch.
func TestDedupPerInboxInBatch(t *testing.T) {
	var mu sync.Mutex
	var batches []int
	s := openStore(t, postgres.Config{Writers: 1, OnBatch: func(size int, _ time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			batches = append(batches, size)
		}
	}})
	for _, u := range []string{"alice", "bob", "carol", "dave", "blocker"} {
		if err := s.CreateUser(testCtx(t), storage.User{ID: u, Name: u, PasswordHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	before, _, err := s.Append(testCtx(t), message("alice", "dave", "x"))
	if err != nil {
		t.Fatal(err)
	}

	// Hold the writer: it waits for the lock on u/blocker's counter.
	tx, err := s.Pool().Begin(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // released below; a no-op then
	if _, err := tx.Exec(testCtx(t), "SELECT 1 FROM inboxes WHERE id = 'u/blocker' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		_, _, err := s.Append(testCtx(t), message("blocker", "blocker", ""))
		blocked <- err
	}()
	testwait.Until(t, 10*time.Second, "the writer to wait for the row lock", func() bool {
		var n int
		err := s.Pool().QueryRow(testCtx(t), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return err == nil && n > 0
	})

	type answer struct {
		es  []protocol.Entry
		dup bool
		err error
	}
	reqs := []storage.Message{
		message("alice", "bob", "x"),   // 0: new
		message("alice", "carol", "x"), // 1: new: the same cid to another recipient
		message("alice", "bob", "x"),   // 2: repeat of 0
		message("alice", "carol", "x"), // 3: repeat of 1
		message("bob", "carol", "x"),   // 4: new: the same cid from another sender
		message("alice", "dave", "x"),  // 5: repeat of the one stored before
	}
	answers := make([]answer, len(reqs))
	var wg sync.WaitGroup
	for i, m := range reqs {
		wg.Go(func() {
			a := &answers[i]
			a.es, a.dup, a.err = s.Append(testCtx(t), m)
		})
		testwait.Until(t, 10*time.Second, "the append to queue", func() bool { return s.Queued(0) == i+1 })
	}
	if err := tx.Rollback(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := <-blocked; err != nil {
		t.Fatalf("blocker: %v", err)
	}

	wants := []struct {
		seqs []int64
		dup  bool
		of   []protocol.Entry // what a repeat returns; nil: its own
	}{
		{seqs: []int64{1, 2}},
		{seqs: []int64{1, 3}},
		{dup: true},
		{dup: true},
		{seqs: []int64{2, 2}},
		{dup: true, of: before},
	}
	wants[2].of, wants[3].of = answers[0].es, answers[1].es
	for i, w := range wants {
		a := answers[i]
		if a.err != nil || a.dup != w.dup {
			t.Errorf("append %d: dup=%v err=%v, want dup=%v", i, a.dup, a.err, w.dup)
			continue
		}
		if w.dup {
			if !sameCopies(a.es, w.of) {
				t.Errorf("append %d: repeat returned %+v, want %+v", i, a.es, w.of)
			}
			continue
		}
		for j, e := range a.es {
			if e.ID != reqs[i].ID || e.Inbox != reqs[i].Inboxes[j] || e.Seq != w.seqs[j] {
				t.Errorf("append %d: entries %+v, want seqs %v in %v", i, a.es, w.seqs, reqs[i].Inboxes)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(batches, len(reqs)) {
		t.Errorf("OnBatch heard batches of %v; want one of %d", batches, len(reqs))
	}
}

func sameCopies(a, b []protocol.Entry) bool {
	return slices.EqualFunc(a, b, func(x, y protocol.Entry) bool {
		return x.ID == y.ID && x.Inbox == y.Inbox && x.Seq == y.Seq
	})
}

// TestMigrateDedupInbox: 011_dedup_inbox.sql gives the idempotency keys of
// a database migrated up to 010 the inbox of their message: a group's, or
// the recipient's (also when only the sender's copy is left); keys whose
// message is gone are dropped. Retries then find their keys.
func TestMigrateDedupInbox(t *testing.T) {
	url := emptyDatabase(t)
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	ms, err := storage.LoadMigrations(postgres.Migrations(), "migrations")
	if err != nil {
		t.Fatal(err)
	}
	// The table as migrate creates it, and the migrations before 011.
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (
		version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version >= 11 {
			break
		}
		if _, err := conn.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}

	// Keys as 001_init.sql keyed them, (sender, cid), with their messages.
	ids := map[string]string{}
	for _, m := range []string{"dm", "group", "gone recipient", "self", "gone"} {
		ids[m] = uuid.NewString()
	}
	now := time.Now().UnixMilli()
	entries := []struct {
		inbox string
		seq   int64
		msg   string
		from  string
		to    string
		cid   string
	}{
		{"u/bob", 1, "dm", "alice", "bob", "c1"},
		{"u/alice", 1, "dm", "alice", "bob", "c1"},
		{"g/trip", 1, "group", "alice", "trip", "c2"},
		{"u/carol", 1, "gone recipient", "carol", "bob", "c3"}, // u/bob's copy deleted
		{"u/alice", 2, "self", "alice", "alice", "c4"},
	}
	for _, e := range entries {
		if _, err := conn.Exec(ctx, `INSERT INTO entries (inbox, seq, id, sender, recipient, ts, kind, cid, data)
			VALUES ($1, $2, $3, $4, $5, $6, 'msg', $7, '\x7b7d')`, e.inbox, e.seq, ids[e.msg], e.from, e.to, now, e.cid); err != nil {
			t.Fatal(err)
		}
	}
	for _, in := range []struct {
		id   string
		last int64
	}{{"u/alice", 2}, {"u/bob", 1}, {"u/carol", 1}, {"g/trip", 1}} {
		if _, err := conn.Exec(ctx, "INSERT INTO inboxes (id, last_seq) VALUES ($1, $2)", in.id, in.last); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range [][3]string{{"alice", "c1", "dm"}, {"alice", "c2", "group"}, {"carol", "c3", "gone recipient"},
		{"alice", "c4", "self"}, {"bob", "c5", "gone"}} {
		if _, err := conn.Exec(ctx, "INSERT INTO dedup (sender, cid, id) VALUES ($1, $2, $3)", k[0], k[1], ids[k[2]]); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)

	s, err := postgres.Open(ctx, postgres.Config{URL: url}, nil)
	if err != nil {
		t.Fatalf("Open (migrating): %v", err)
	}
	defer s.Close()
	rows, err := s.Pool().Query(ctx, "SELECT sender, inbox, cid, id::text FROM dedup ORDER BY sender, cid")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[dedupRow])
	if err != nil {
		t.Fatal(err)
	}
	want := []dedupRow{
		{"alice", "u/bob", "c1", ids["dm"]},
		{"alice", "g/trip", "c2", ids["group"]},
		{"alice", "u/alice", "c4", ids["self"]},
		{"carol", "u/bob", "c3", ids["gone recipient"]},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("dedup after 011 = %+v, want %+v", got, want)
	}

	// A retry finds its key; the same cid to another inbox is new.
	// dupOf is the message a retry finds, "" for a new one.
	retry := func(m storage.Message, dupOf string) {
		t.Helper()
		es, dup, err := s.Append(ctx, m)
		if err != nil || dup != (dupOf != "") || (dup && es[0].ID != ids[dupOf]) {
			t.Errorf("Append %s→%v cid %s = %+v, dup=%v, %v; want a repeat of %q", m.From, m.Inboxes, m.Cid, es, dup, err, dupOf)
		}
	}
	retry(message("alice", "bob", "c1"), "dm")
	retry(message("alice", "carol", "c1"), "")
	group := message("alice", "alice", "c2")
	group.To, group.Inboxes = "trip", []string{protocol.GroupInbox("trip")}
	retry(group, "group")
}

type dedupRow struct{ Sender, Inbox, Cid, ID string }

// emptyDatabase creates a database without any migration, dropped when the
// test ends, and returns its URL.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "parley_test_empty_" + hex.EncodeToString(b)
	url := pgtest.WithDatabase(pgtest.ServerURL(), name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, pgtest.ServerURL())
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	if err := postgres.CreateDatabase(testCtx(t), url); err != nil {
		t.Fatalf("CreateDatabase: %v", err)
	}
	return url
}
