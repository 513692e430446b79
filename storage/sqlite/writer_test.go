package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// These tests look inside the store: at the pragmas of its connections, and
// at batches queued in a known order while the writer is held inside a
// transaction, so that what shares the next transaction is certain.

func openInternal(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "parley.db")
	}
	s, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPragmas(t *testing.T) {
	s := openInternal(t, Config{BusyTimeout: 1500 * time.Millisecond})
	pragma := func(db *sql.DB, name string) string {
		t.Helper()
		var v string
		if err := db.QueryRow("PRAGMA " + name).Scan(&v); err != nil {
			t.Fatalf("PRAGMA %s: %v", name, err)
		}
		return v
	}
	cases := map[string]struct {
		db         *sql.DB
		name, want string
	}{
		"writer journal_mode":  {s.wdb, "journal_mode", "wal"},
		"writer synchronous":   {s.wdb, "synchronous", "2"}, // FULL
		"writer foreign_keys":  {s.wdb, "foreign_keys", "1"},
		"writer busy_timeout":  {s.wdb, "busy_timeout", "1500"},
		"writer fullfsync":     {s.wdb, "fullfsync", "1"},
		"writer query_only":    {s.wdb, "query_only", "0"},
		"reader journal_mode":  {s.rdb, "journal_mode", "wal"},
		"reader synchronous":   {s.rdb, "synchronous", "2"},
		"reader foreign_keys":  {s.rdb, "foreign_keys", "1"},
		"reader busy_timeout":  {s.rdb, "busy_timeout", "1500"},
		"reader query_only":    {s.rdb, "query_only", "1"},
		"schema version":       {s.rdb, "user_version", "0"},
		"writer journal limit": {s.wdb, "journal_size_limit", "67108864"},
	}
	for name, c := range cases {
		if got := pragma(c.db, c.name); got != c.want {
			t.Errorf("%s = %q, want %q", name, got, c.want)
		}
	}
	if _, err := s.rdb.Exec("INSERT INTO inboxes (id) VALUES ('u/x')"); err == nil {
		t.Error("a reader connection wrote")
	}
	var applied int
	ms, _ := fs.Glob(migrationFiles, "migrations/*.sql")
	if err := s.rdb.QueryRow("SELECT count(*) FROM schema_migrations").Scan(&applied); err != nil || applied != len(ms) {
		t.Errorf("schema_migrations: %d rows, %v; want one per migration (%d)", applied, err, len(ms))
	}
}

// pending is one write for commitBatch, and its answer.
type pending struct {
	req *request
	// cancelQueued: the write's context ends once it is queued, before its
	// transaction begins.
	cancelQueued bool

	res result
	err error
}

func appendReq(m storage.Message) *pending { return &pending{req: &request{m: &m}} }

func opReq(op func(context.Context, *sql.Tx) error) *pending {
	return &pending{req: &request{op: op}}
}

func msg(from, to, cid string) storage.Message {
	return storage.Message{ID: uuid.NewString(), From: from, To: to, TS: 1, Type: protocol.TypeMsg, Cid: cid,
		Data: []byte(`{}`), Inboxes: []string{protocol.UserInbox(to), protocol.UserInbox(from)}}
}

func seqs(es []protocol.Entry) []int64 {
	var out []int64
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

// commitBatch has the writer commit reqs as one batch, in order: a first
// write holds the writer inside its transaction until all of reqs are
// queued. It returns once each is answered.
func commitBatch(t *testing.T, s *Store, reqs ...*pending) {
	t.Helper()
	entered, release := make(chan struct{}), make(chan struct{})
	gate := make(chan error, 1)
	go func() {
		gate <- s.write(context.Background(), func(context.Context, *sql.Tx) error {
			close(entered)
			<-release
			return nil
		})
	}()
	<-entered
	var wg sync.WaitGroup
	var cancels []context.CancelFunc
	for i, p := range reqs {
		ctx := context.Background()
		if p.cancelQueued {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			cancels = append(cancels, cancel)
		}
		wg.Go(func() { p.res, p.err = s.w.Do(ctx, p.req) })
		testwait.Until(t, 10*time.Second, fmt.Sprintf("write %d to queue", i), func() bool { return s.w.Queued() == i+1 })
	}
	for _, cancel := range cancels {
		cancel()
	}
	close(release)
	if err := <-gate; err != nil {
		t.Fatalf("gate: %v", err)
	}
	wg.Wait()
}

// TestBatchSemantics: in one transaction, a repeated cid gets the first
// copy, a missing inbox fails its message alone (and its repeat), a write
// that creates the inbox lets a later message in, and a failed write leaves
// the rest alone.
func TestBatchSemantics(t *testing.T) {
	var batches []error
	s := openInternal(t, Config{OnBatch: func(_ int, _ time.Duration, err error) { batches = append(batches, err) }})
	for _, u := range []string{"alice", "bob"} {
		if err := s.CreateUser(context.Background(), storage.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	batches = nil
	reqs := []*pending{
		appendReq(msg("alice", "bob", "x")), // 0: new
		appendReq(msg("alice", "bob", "x")), // 1: repeat of 0, same batch
		appendReq(msg("alice", "zed", "y")), // 2: zed has no inbox
		appendReq(msg("alice", "zed", "y")), // 3: repeat of a failed message
		opReq(createUserOp(storage.User{ID: "zed"})),
		appendReq(msg("alice", "zed", "y")),            // 5: now zed exists
		opReq(createUserOp(storage.User{ID: "alice"})), // 6: taken
		appendReq(msg("bob", "alice", "x")),            // 7: same cid, other sender
		appendReq(msg("alice", "bob", "")),             // 8: no cid
	}
	commitBatch(t, s, reqs...)
	if len(batches) != 2 || batches[1] != nil {
		t.Fatalf("batches: %v, want the gate's and one that succeeded", batches)
	}
	type want struct {
		seqs     []int64
		dup      bool
		err      error
		sameAs   int // the request whose entries a dup returns
		hasError bool
	}
	wants := []want{
		{seqs: []int64{1, 1}},
		{seqs: []int64{1, 1}, dup: true, sameAs: 0},
		{err: storage.ErrNotFound},
		{err: storage.ErrNotFound},
		{},
		{seqs: []int64{1, 2}}, // u/zed 1, u/alice 2
		{hasError: true},
		{seqs: []int64{3, 2}}, // u/alice 3, u/bob 2
		{seqs: []int64{3, 4}}, // u/bob 3, u/alice 4
	}
	for i, w := range wants {
		r := reqs[i]
		entries := r.res.entries
		switch {
		case w.err != nil:
			if !errors.Is(r.err, w.err) {
				t.Errorf("request %d: err = %v, want %v", i, r.err, w.err)
			}
		case w.hasError:
			if sqliteCode(r.err) == 0 || !errors.Is(classify(r.err), storage.ErrExists) {
				t.Errorf("request %d: err = %v, want a taken id", i, r.err)
			}
		case r.err != nil:
			t.Errorf("request %d: %v", i, r.err)
		case r.res.dup != w.dup || len(entries) != len(w.seqs):
			t.Errorf("request %d: dup=%v entries=%+v, want dup=%v seqs %v", i, r.res.dup, entries, w.dup, w.seqs)
		default:
			for j, e := range entries {
				if e.Seq != w.seqs[j] || e.Inbox != r.req.m.Inboxes[j] {
					t.Errorf("request %d: entries %+v, want seqs %v in %v", i, entries, w.seqs, r.req.m.Inboxes)
				}
				if w.dup && e.ID != reqs[w.sameAs].req.m.ID {
					t.Errorf("request %d: dup entry %+v is not message %d", i, e, w.sameAs)
				}
			}
		}
	}
	for inbox, last := range map[string]int64{"u/alice": 4, "u/bob": 3, "u/zed": 1} {
		if seq, err := s.LastSeq(context.Background(), inbox); err != nil || seq != last {
			t.Errorf("LastSeq(%s) = %d, %v; want %d", inbox, seq, err, last)
		}
	}
}

// TestBatchIsolation: a message that breaks the transaction fails alone;
// the others in its batch are stored.
func TestBatchIsolation(t *testing.T) {
	var batches []error
	s := openInternal(t, Config{OnBatch: func(_ int, _ time.Duration, err error) { batches = append(batches, err) }})
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		if err := s.CreateUser(context.Background(), storage.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Append(context.Background(), msg("alice", "bob", "")); err != nil {
		t.Fatal(err)
	}
	// Break an invariant: u/bob's counter forgets its entry, so the next
	// copy for u/bob collides with it.
	if err := s.write(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE inboxes SET last_seq = 0 WHERE id = 'u/bob'")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	batches = nil
	bad, good := appendReq(msg("alice", "bob", "b")), appendReq(msg("carol", "dave", "g"))
	commitBatch(t, s, good, bad)
	if bad.err == nil || errors.Is(bad.err, storage.ErrUnavailable) || errors.Is(bad.err, storage.ErrExists) {
		t.Errorf("colliding append: err = %v, want the constraint error", bad.err)
	}
	if good.err != nil || !slices.Equal(seqs(good.res.entries), []int64{1, 1}) {
		t.Errorf("good append in the same batch: %+v, %v", good.res.entries, good.err)
	}
	if len(batches) != 2 || batches[1] == nil {
		t.Errorf("OnBatch saw %v, want the gate's and one failed batch", batches)
	}
	if seq, _ := s.LastSeq(context.Background(), "u/alice"); seq != 1 {
		t.Errorf("u/alice moved to %d: the failed message left a copy", seq)
	}
	// The cid of the failed message is free.
	var n int
	if err := s.rdb.QueryRow("SELECT count(*) FROM dedup WHERE cid = 'b'").Scan(&n); err != nil || n != 0 {
		t.Errorf("dedup rows for the failed message: %d, %v", n, err)
	}
}

// TestCanceledInBatch: a request whose context ended while it was queued is
// answered without being stored; the rest of its batch goes on.
func TestCanceledInBatch(t *testing.T) {
	s := openInternal(t, Config{})
	for _, u := range []string{"alice", "bob"} {
		if err := s.CreateUser(context.Background(), storage.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	gone := appendReq(msg("alice", "bob", ""))
	gone.cancelQueued = true
	kept := appendReq(msg("alice", "bob", ""))
	commitBatch(t, s, gone, kept)
	if !errors.Is(gone.err, storage.ErrUnavailable) || !errors.Is(gone.err, context.Canceled) {
		t.Errorf("canceled request: err = %v", gone.err)
	}
	if kept.err != nil || kept.res.entries[0].Seq != 1 {
		t.Errorf("kept request: %+v, %v", kept.res.entries, kept.err)
	}
}

// TestCloseDrainsQueue: writes still queued when Close is called are
// committed and answered before Close returns. The writer is held up by
// taking its only connection, so that the queue is known to be full of
// appends when Close starts.
func TestCloseDrainsQueue(t *testing.T) {
	s := openInternal(t, Config{MaxBatch: 1, QueueSize: 100})
	for _, u := range []string{"alice", "bob"} {
		if err := s.CreateUser(context.Background(), storage.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := s.wdb.Conn(ctx) // the writer cannot begin until this is released
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() {
			_, _, err := s.Append(ctx, msg("alice", "bob", ""))
			errs <- err
		}()
	}
	// The writer holds one request (MaxBatch 1), waiting for the connection;
	// the others are queued.
	testwait.Until(t, 10*time.Second, "appends to queue", func() bool { return s.w.Queued() == n-1 })
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	testwait.Until(t, 10*time.Second, "Close to refuse new writes", s.isClosed.Load)
	select {
	case err := <-errs:
		t.Fatalf("an append was answered (%v) before the writer could commit", err)
	default:
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range n {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("queued append: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("Close returned, but queued appends were never answered")
		}
	}
	s2 := openInternal(t, Config{Path: s.path})
	if seq, err := s2.LastSeq(context.Background(), "u/bob"); err != nil || seq != n {
		t.Fatalf("u/bob last seq after Close = %d, %v; want %d", seq, err, n)
	}
}
