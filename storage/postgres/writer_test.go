package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
	"github.com/parleychat/parley/storage/storetest"
)

// TestPoisonedBatch: values Postgres refuses (a NUL in text, SQLSTATE 22021;
// an index row over 2,704 bytes, 54000) reach the writer in one batch with
// good appends of other users, past the up-front check. The batch fails as a
// whole, the engine isolates the poisoned appends, which fail alone with
// ErrInvalid, and every good append is stored. The writer is held on a row
// lock while the batch queues, so that it is certain to be one batch.
func TestPoisonedBatch(t *testing.T) {
	type outcome struct {
		size int
		err  error
	}
	var mu sync.Mutex
	var batches []outcome
	s := openStore(t, postgres.Config{Writers: 1, OnBatch: func(size int, _ time.Duration, err error) {
		mu.Lock()
		batches = append(batches, outcome{size, err})
		mu.Unlock()
	}})
	for _, u := range []string{"alice", "bob", "carol", "dave", "blocker"} {
		if err := s.CreateUser(testCtx(t), storage.User{ID: u, Name: u, PasswordHash: "h"}); err != nil {
			t.Fatal(err)
		}
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

	poisons := map[string]func(m *storage.Message){
		"NUL in cid":          func(m *storage.Message) { m.Cid = "c\x00" },
		"invalid UTF-8 cid":   func(m *storage.Message) { m.Cid = "c\xff" },
		"6,000-character cid": func(m *storage.Message) { m.Cid = storetest.LongKey(6000) },
	}
	const good = 40
	var wg sync.WaitGroup
	goodErrs := make([]error, good)
	for i := range good {
		wg.Go(func() {
			_, _, goodErrs[i] = s.Append(testCtx(t), message("carol", "dave", fmt.Sprint("g", i)))
		})
	}
	var badMu sync.Mutex
	badErrs := map[string]error{}
	for name, spoil := range poisons {
		wg.Go(func() {
			m := message("alice", "bob", "b")
			spoil(&m)
			_, _, err := s.AppendUnchecked(testCtx(t), m)
			badMu.Lock()
			badErrs[name] = err
			badMu.Unlock()
		})
	}
	total := good + len(poisons)
	testwait.Until(t, 10*time.Second, "the batch to queue", func() bool { return s.Queued(0) == total })
	if err := tx.Rollback(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := <-blocked; err != nil {
		t.Fatalf("blocker: %v", err)
	}

	for name, err := range badErrs {
		if !errors.Is(err, storage.ErrInvalid) || errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	for i, err := range goodErrs {
		if err != nil {
			t.Errorf("good append %d in the poisoned batch: %v", i, err)
		}
	}
	es, err := s.Read(testCtx(t), "u/dave", 0, 2*good)
	if err != nil || len(es) != good {
		t.Fatalf("u/dave holds %d entries, %v; want %d", len(es), err, good)
	}
	for i, e := range es {
		if e.Seq != int64(i+1) {
			t.Fatalf("u/dave entry %d has seq %d: not gapless", i, e.Seq)
		}
	}
	if seq, err := s.LastSeq(testCtx(t), "u/bob"); err != nil || seq != 0 {
		t.Errorf("u/bob last seq = %d, %v; the poisoned appends left entries", seq, err)
	}
	mu.Lock()
	defer mu.Unlock()
	var seen bool
	for _, b := range batches {
		var pgErr *pgconn.PgError
		if b.size == total && errors.As(b.err, &pgErr) && (pgErr.Code == "22021" || pgErr.Code == "54000") {
			seen = true
		}
	}
	if !seen {
		t.Errorf("OnBatch heard %v; want one batch of %d that the database refused", batches, total)
	}
}

// TestCursorFlushIsolatesRefusedRows: a cursor Postgres refuses (a client id
// too long for the index, past the up-front check) costs only its own row:
// the flush falls back to one row at a time and saves the others.
func TestCursorFlushIsolatesRefusedRows(t *testing.T) {
	s := openStore(t, postgres.Config{})
	long := storetest.LongKey(6000)
	dropped, err := s.SaveCursorsUnchecked(testCtx(t), []storage.Cursor{
		{ClientID: "bob/phone", Inbox: "u/bob", Seq: 4},
		{ClientID: long, Inbox: "u/bob", Seq: 9},
		{ClientID: "carol/phone", Inbox: "u/carol", Seq: 2},
	})
	if err != nil || dropped != 1 {
		t.Fatalf("SaveCursorsUnchecked = %d dropped, %v; want 1, nil", dropped, err)
	}
	for c, want := range map[string]int64{"bob/phone": 4, "carol/phone": 2} {
		inbox := protocol.UserInbox(strings.TrimSuffix(c, "/phone"))
		if seq, err := s.GetCursor(testCtx(t), c, inbox); err != nil || seq != want {
			t.Errorf("GetCursor(%s) = %d, %v; want %d", c, seq, err, want)
		}
	}
}

func openStore(t *testing.T, cfg postgres.Config) *postgres.Store {
	t.Helper()
	cfg.URL = pgtest.NewDatabase(t)
	s, err := postgres.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(tWriter{t}, nil)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// tWriter sends log lines to the test's log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func message(from, to, cid string) storage.Message {
	inboxes := []string{protocol.UserInbox(to)}
	if from != to {
		inboxes = append(inboxes, protocol.UserInbox(from))
	}
	return storage.Message{ID: uuid.NewString(), From: from, To: to, TS: time.Now().UnixMilli(), Type: protocol.TypeMsg,
		Cid: cid, Data: []byte(`{}`), Inboxes: inboxes}
}
