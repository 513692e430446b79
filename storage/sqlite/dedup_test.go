package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// TestBatchDedupPerInbox: in one transaction, a cid reused for another
// recipient is a new message, repeats of each (sender, inbox, cid) get the
// first copies (whether stored in this batch or before it), and the same
// cid from another sender is its own message.
func TestBatchDedupPerInbox(t *testing.T) {
	var batches []error
	s := openInternal(t, Config{OnBatch: func(_ int, _ time.Duration, err error) { batches = append(batches, err) }})
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		if err := s.CreateUser(context.Background(), storage.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	before, _, err := s.Append(context.Background(), msg("alice", "dave", "x"))
	if err != nil {
		t.Fatal(err)
	}
	batches = nil
	reqs := []*pending{
		appendReq(msg("alice", "bob", "x")),   // 0: new
		appendReq(msg("alice", "carol", "x")), // 1: new: the same cid to another recipient
		appendReq(msg("alice", "bob", "x")),   // 2: repeat of 0
		appendReq(msg("alice", "carol", "x")), // 3: repeat of 1
		appendReq(msg("bob", "carol", "x")),   // 4: new: the same cid from another sender
		appendReq(msg("alice", "dave", "x")),  // 5: repeat of the one stored before
	}
	commitBatch(t, s, reqs...)
	if len(batches) != 2 || batches[1] != nil {
		t.Fatalf("batches: %v, want the gate's and one that succeeded", batches)
	}
	wants := []struct {
		seqs []int64
		dup  bool
		of   []protocol.Entry // what a repeat returns
	}{
		{seqs: []int64{1, 2}},
		{seqs: []int64{1, 3}},
		{dup: true, of: reqs[0].res.entries},
		{dup: true, of: reqs[1].res.entries},
		{seqs: []int64{2, 2}},
		{dup: true, of: before},
	}
	same := func(a, b protocol.Entry) bool { return a.ID == b.ID && a.Inbox == b.Inbox && a.Seq == b.Seq }
	for i, w := range wants {
		r := reqs[i]
		switch {
		case r.err != nil || r.res.dup != w.dup:
			t.Errorf("request %d: dup=%v err=%v, want dup=%v", i, r.res.dup, r.err, w.dup)
		case w.dup:
			if !slices.EqualFunc(r.res.entries, w.of, same) {
				t.Errorf("request %d: repeat returned %+v, want %+v", i, r.res.entries, w.of)
			}
		case !slices.Equal(seqs(r.res.entries), w.seqs):
			t.Errorf("request %d: seqs %v, want %v", i, seqs(r.res.entries), w.seqs)
		}
	}
}

// TestMigrateDedupInbox: 011_dedup_inbox.sql gives the idempotency keys of
// a database migrated up to 010 the inbox of their message: a group's, or
// the recipient's (also when only the sender's copy is left); keys whose
// message is gone are dropped. Retries then find their keys.
func TestMigrateDedupInbox(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Path: filepath.Join(t.TempDir(), "parley.db")}
	cfg.setDefaults()
	db, err := sql.Open("sqlite", dsn(cfg.Path, cfg, false))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	// The table as migrate creates it, and the migrations before 011.
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version >= 11 {
			break
		}
		if err := applyMigration(ctx, db, m); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
	}

	// Keys as 001_init.sql keyed them, (sender, cid), with their messages.
	ids := map[string]string{}
	for _, m := range []string{"dm", "group", "gone recipient", "self", "gone"} {
		ids[m] = uuid.NewString()
	}
	now := time.Now().UnixMilli()
	for _, e := range []struct {
		inbox              string
		seq                int64
		msg, from, to, cid string
	}{
		{"u/bob", 1, "dm", "alice", "bob", "c1"},
		{"u/alice", 1, "dm", "alice", "bob", "c1"},
		{"g/trip", 1, "group", "alice", "trip", "c2"},
		{"u/carol", 1, "gone recipient", "carol", "bob", "c3"}, // u/bob's copy deleted
		{"u/alice", 2, "self", "alice", "alice", "c4"},
	} {
		if _, err := db.ExecContext(ctx, `INSERT INTO entries (inbox, seq, id, sender, recipient, ts, kind, cid, data)
			VALUES (?, ?, ?, ?, ?, ?, 'msg', ?, X'7b7d')`, e.inbox, e.seq, ids[e.msg], e.from, e.to, now, e.cid); err != nil {
			t.Fatal(err)
		}
	}
	for id, last := range map[string]int64{"u/alice": 2, "u/bob": 1, "u/carol": 1, "g/trip": 1} {
		if _, err := db.ExecContext(ctx, "INSERT INTO inboxes (id, last_seq) VALUES (?, ?)", id, last); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range [][3]string{{"alice", "c1", "dm"}, {"alice", "c2", "group"}, {"carol", "c3", "gone recipient"},
		{"alice", "c4", "self"}, {"bob", "c5", "gone"}} {
		if _, err := db.ExecContext(ctx, "INSERT INTO dedup (sender, cid, id) VALUES (?, ?, ?)", k[0], k[1], ids[k[2]]); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openInternal(t, cfg)
	rows, err := s.rdb.QueryContext(ctx, "SELECT sender, inbox, cid, id FROM dedup ORDER BY sender, cid")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type row struct{ sender, inbox, cid, id string }
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.sender, &r.inbox, &r.cid, &r.id); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []row{
		{"alice", "u/bob", "c1", ids["dm"]},
		{"alice", "g/trip", "c2", ids["group"]},
		{"alice", "u/alice", "c4", ids["self"]},
		{"carol", "u/bob", "c3", ids["gone recipient"]},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("dedup after 011 = %+v, want %+v", got, want)
	}

	// A retry finds its key; the same cid to another inbox is new. dupOf
	// is the message a retry finds, "" for a new one.
	retry := func(m storage.Message, dupOf string) {
		t.Helper()
		es, dup, err := s.Append(ctx, m)
		if err != nil || dup != (dupOf != "") || (dup && es[0].ID != ids[dupOf]) {
			t.Errorf("Append %s→%v cid %s = %+v, dup=%v, %v; want a repeat of %q", m.From, m.Inboxes, m.Cid, es, dup, err, dupOf)
		}
	}
	retry(msg("alice", "bob", "c1"), "dm")
	retry(msg("alice", "carol", "c1"), "")
	group := msg("alice", "alice", "c2")
	group.To, group.Inboxes = "trip", []string{protocol.GroupInbox("trip")}
	retry(group, "group")
}
