package sqlite_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/sqlite"
	"github.com/parleychat/parley/storage/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// open opens a store at path that the test closes at its end.
func open(t testing.TB, cfg sqlite.Config) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
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

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustUser(t testing.TB, s storage.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := s.CreateUser(ctx(t), storage.User{ID: id, Name: "User " + id, PasswordHash: "h"}); err != nil {
			t.Fatalf("CreateUser(%s): %v", id, err)
		}
	}
}

func dm(from, to, cid string) storage.Message {
	return storage.Message{
		ID: uuid.NewString(), From: from, To: to, TS: time.Now().UnixMilli(), Type: protocol.TypeMsg,
		Cid: cid, Data: []byte(`{"text":"hi"}`), Inboxes: []string{protocol.UserInbox(to), protocol.UserInbox(from)},
	}
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store {
		s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "parley.db"), PushJobs: true}, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestOpenCreatesDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "parley.db")
	s := open(t, sqlite.Config{Path: path})
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file: %v", err)
	}
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestOpenRefusesMemory(t *testing.T) {
	for name, path := range map[string]string{"memory": ":memory:", "uri": "file:x.db?mode=memory"} {
		if _, err := sqlite.Open(context.Background(), sqlite.Config{Path: path}, nil); err == nil {
			t.Errorf("%s: Open(%q) succeeded", name, path)
		}
	}
}

// TestOpenPathWithQuestionMark: the path goes into a file: URI escaped, so
// characters that mean something in a URI stay part of the name.
func TestOpenPathWithQuestionMark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd?dir#1 %20", "parley.db")
	s := open(t, sqlite.Config{Path: path})
	mustUser(t, s, "alice")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file: %v", err)
	}
}

// TestReopen: data survives Close and Open; seqs continue where they were and
// a repeated cid is still recognised.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	s, err := sqlite.Open(ctx(t), sqlite.Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustUser(t, s, "alice", "bob")
	var first []protocol.Entry
	for i := range 5 {
		es, _, err := s.Append(ctx(t), dm("alice", "bob", fmt.Sprintf("c%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = es
		}
	}
	if err := s.SaveCursors(ctx(t), []storage.Cursor{{ClientID: "bob/phone", Inbox: "u/bob", Seq: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx(t), []byte("tok"), "bob", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, sqlite.Config{Path: path})
	if seq, err := s.LastSeq(ctx(t), "u/bob"); err != nil || seq != 5 {
		t.Fatalf("LastSeq after reopen = %d, %v; want 5", seq, err)
	}
	es, err := s.Read(ctx(t), "u/bob", 0, 100)
	if err != nil || len(es) != 5 {
		t.Fatalf("Read after reopen: %d entries, %v", len(es), err)
	}
	for i, e := range es {
		if e.Seq != int64(i+1) || e.From != "alice" || string(e.Data) != `{"text":"hi"}` {
			t.Fatalf("entry %d after reopen = %+v", i, e)
		}
	}
	again, dup, err := s.Append(ctx(t), dm("alice", "bob", "c0"))
	if err != nil || !dup || again[0].ID != first[0].ID || again[0].Seq != 1 || again[1].Inbox != "u/alice" {
		t.Fatalf("repeat of c0 after reopen = %+v dup=%v err=%v", again, dup, err)
	}
	es2, dup, err := s.Append(ctx(t), dm("bob", "alice", ""))
	if err != nil || dup || es2[0].Seq != 6 || es2[1].Seq != 6 {
		t.Fatalf("next append after reopen = %+v dup=%v err=%v, want seq 6", es2, dup, err)
	}
	if seq, err := s.GetCursor(ctx(t), "bob/phone", "u/bob"); err != nil || seq != 3 {
		t.Fatalf("GetCursor after reopen = %d, %v", seq, err)
	}
	if u, err := s.TokenUser(ctx(t), []byte("tok"), time.Now()); err != nil || u != "bob" {
		t.Fatalf("TokenUser after reopen = %q, %v", u, err)
	}
}

// TestClosed: every call after Close fails with ErrClosed.
func TestClosed(t *testing.T) {
	s := open(t, sqlite.Config{Path: filepath.Join(t.TempDir(), "parley.db")})
	mustUser(t, s, "alice")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Append":      func() error { _, _, err := s.Append(ctx(t), dm("alice", "alice", "")); return err },
		"CreateUser":  func() error { return s.CreateUser(ctx(t), storage.User{ID: "bob"}) },
		"GetUser":     func() error { _, err := s.GetUser(ctx(t), "alice"); return err },
		"Read":        func() error { _, err := s.Read(ctx(t), "u/alice", 0, 10); return err },
		"LastSeq":     func() error { _, err := s.LastSeq(ctx(t), "u/alice"); return err },
		"SaveCursors": func() error { return s.SaveCursors(ctx(t), []storage.Cursor{{ClientID: "c", Inbox: "u/alice"}}) },
		"Ping":        func() error { return s.Ping(ctx(t)) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
}

// TestCloseFinishesPendingAppends: appends queued when Close is called are
// committed and answered, not dropped.
func TestCloseFinishesPendingAppends(t *testing.T) {
	s := open(t, sqlite.Config{Path: filepath.Join(t.TempDir(), "parley.db")})
	mustUser(t, s, "alice", "bob")
	const n = 200
	var wg sync.WaitGroup
	var stored, closed atomic.Int64
	started := make(chan struct{}, n)
	for range n {
		wg.Go(func() {
			started <- struct{}{}
			_, _, err := s.Append(ctx(t), dm("alice", "bob", ""))
			switch {
			case err == nil:
				stored.Add(1)
			case errors.Is(err, storage.ErrClosed):
				closed.Add(1)
			default:
				t.Errorf("Append: %v", err)
			}
		})
	}
	for range n {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if stored.Load()+closed.Load() != n {
		t.Fatalf("%d stored + %d refused, want %d answers", stored.Load(), closed.Load(), n)
	}
	s2 := open(t, sqlite.Config{Path: s.Path()})
	if seq, _ := s2.LastSeq(ctx(t), "u/bob"); seq != stored.Load() {
		t.Fatalf("u/bob holds %d entries, %d appends reported success", seq, stored.Load())
	}
}

// TestAppendCanceledContext: an append whose context ended before the writer
// took it stores nothing and reports ErrUnavailable.
func TestAppendCanceledContext(t *testing.T) {
	s := open(t, sqlite.Config{Path: filepath.Join(t.TempDir(), "parley.db")})
	mustUser(t, s, "alice", "bob")
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Append(c, dm("alice", "bob", "x")); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Append with a canceled context: err = %v, want ErrUnavailable", err)
	}
	if seq, _ := s.LastSeq(ctx(t), "u/bob"); seq != 0 {
		t.Fatalf("u/bob moved to %d", seq)
	}
	if _, dup, err := s.Append(ctx(t), dm("alice", "bob", "x")); err != nil || dup {
		t.Fatalf("Append after the canceled one: dup=%v err=%v; the cid must not be taken", dup, err)
	}
}

// TestGroupCommit: concurrent appends share transactions, never more than
// MaxBatch in one.
func TestGroupCommit(t *testing.T) {
	const maxBatch = 16
	var mu sync.Mutex
	sizes := map[int]int{}
	s := open(t, sqlite.Config{Path: filepath.Join(t.TempDir(), "parley.db"), MaxBatch: maxBatch,
		OnBatch: func(size int, _ time.Duration, err error) {
			if err != nil {
				t.Errorf("batch of %d failed: %v", size, err)
			}
			mu.Lock()
			sizes[size]++
			mu.Unlock()
		}})
	mustUser(t, s, "alice", "bob")
	const senders, each = 50, 10
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for range each {
				if _, _, err := s.Append(ctx(t), dm("alice", "bob", "")); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	total, largest := 0, 0
	for size, n := range sizes {
		total += size * n
		largest = max(largest, size)
	}
	if total != senders*each+2 { // + the two CreateUser
		t.Errorf("batches carried %d writes, want %d", total, senders*each+2)
	}
	if largest > maxBatch {
		t.Errorf("a batch carried %d writes, MaxBatch is %d", largest, maxBatch)
	}
	if largest < 2 {
		t.Errorf("no batch carried more than one write: %v", sizes)
	}
	t.Logf("batch sizes (size: count): %v", sizes)
}

// TestWritesShareBatches: user, token and cursor writes queue with appends
// and keep their own errors.
func TestWritesShareBatches(t *testing.T) {
	s := open(t, sqlite.Config{Path: filepath.Join(t.TempDir(), "parley.db")})
	mustUser(t, s, "alice")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			id := fmt.Sprintf("u%d", i%10) // every id twice
			err := s.CreateUser(ctx(t), storage.User{ID: id, Name: id, PasswordHash: "h"})
			if err != nil && !errors.Is(err, storage.ErrExists) {
				t.Errorf("CreateUser(%s): %v", id, err)
			}
			if _, _, err := s.Append(ctx(t), dm("alice", "alice", "")); err != nil {
				t.Errorf("Append: %v", err)
			}
		})
	}
	wg.Wait()
	for i := range 10 {
		if seq, err := s.LastSeq(ctx(t), fmt.Sprintf("u/u%d", i)); err != nil || seq != 0 {
			t.Errorf("LastSeq(u/u%d) = %d, %v", i, seq, err)
		}
	}
	// alice wrote to herself: one inbox listed twice gets two entries.
	if seq, _ := s.LastSeq(ctx(t), "u/alice"); seq != 40 {
		t.Errorf("u/alice last seq = %d, want 40", seq)
	}
}

// The kill test runs this test binary again as a child that appends until it
// is killed.
const (
	killChildEnv = "PARLEY_SQLITE_KILL_CHILD" // database path, in the child
	killAfter    = 400                        // lines the parent reads before SIGKILL
)

var killUsers = []string{"a", "b", "c", "d"}

// TestKillAfterAppend: an append that returned survives SIGKILL of the
// process. A child appends from several goroutines and prints every stored
// entry as soon as Append returns; the parent kills it with SIGKILL in
// mid-stream, reopens the database and finds every printed entry, with
// gapless seqs.
func TestKillAfterAppend(t *testing.T) {
	if path := os.Getenv(killChildEnv); path != "" {
		killChild(t, path)
		return
	}
	path := filepath.Join(t.TempDir(), "parley.db")
	s, err := sqlite.Open(ctx(t), sqlite.Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustUser(t, s, killUsers...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestKillAfterAppend$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A child that hangs or never prints is killed too, and fails the test.
	watchdog := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()

	type copyKey struct {
		inbox string
		seq   int64
	}
	printed := map[copyKey]string{} // stored copy -> message id
	type sent struct {
		from, cid, id string
		inboxes       []string // the recipient's first
	}
	var msgs []sent
	lines, killed := 0, false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		// "stored <from> <cid> <id> <inbox>:<seq> <inbox>:<seq>"
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[0] != "stored" {
			continue
		}
		m := sent{from: f[1], cid: f[2], id: f[3]}
		for _, c := range f[4:] {
			inbox, seqText, _ := strings.Cut(c, ":")
			m.inboxes = append(m.inboxes, inbox)
			seq, err := strconv.ParseInt(seqText, 10, 64)
			if err != nil {
				t.Fatalf("child printed %q", sc.Text())
			}
			printed[copyKey{inbox, seq}] = f[3]
		}
		msgs = append(msgs, m)
		if lines++; lines == killAfter {
			if err := cmd.Process.Signal(os.Kill); err != nil { // SIGKILL
				t.Fatalf("kill: %v", err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child stopped after %d lines without being killed: %v\n%s", lines, err, stderr.String())
	}
	if !watchdog.Stop() {
		t.Fatal("child hung: killed by the watchdog")
	}
	t.Logf("child printed %d appends before SIGKILL landed (%d lines in all)", killAfter, lines)

	s = open(t, sqlite.Config{Path: path})
	for _, u := range killUsers {
		inbox := protocol.UserInbox(u)
		last, err := s.LastSeq(ctx(t), inbox)
		if err != nil {
			t.Fatal(err)
		}
		es, err := s.Read(ctx(t), inbox, 0, int(last)+10)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(es)) != last {
			t.Fatalf("%s: last seq %d but %d entries", inbox, last, len(es))
		}
		stored := map[int64]string{}
		for i, e := range es {
			if e.Seq != int64(i+1) {
				t.Fatalf("%s: entry %d has seq %d: not gapless", inbox, i, e.Seq)
			}
			stored[e.Seq] = e.ID
		}
		for k, id := range printed {
			if k.inbox == inbox && stored[k.seq] != id {
				t.Errorf("%s seq %d: the child was told %s was stored, found %q", inbox, k.seq, id, stored[k.seq])
			}
		}
	}
	// The idempotency keys (sender, recipient's inbox, cid) survived too.
	for _, m := range msgs[:10] {
		to := strings.TrimPrefix(m.inboxes[0], protocol.UserPrefix)
		es, dup, err := s.Append(ctx(t), storage.Message{ID: uuid.NewString(), From: m.from, To: to, Cid: m.cid,
			Type: protocol.TypeMsg, Inboxes: m.inboxes})
		if err != nil || !dup || es[0].ID != m.id {
			t.Errorf("repeat of %s/%s after the kill: dup=%v err=%v entries=%+v", m.from, m.cid, dup, err, es)
		}
	}
}

// killChild is the child's side of TestKillAfterAppend: append DMs between
// killUsers from several goroutines until killed, printing each as soon as it
// is stored.
func killChild(t *testing.T, path string) {
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // one line per write
	var wg sync.WaitGroup
	for i, from := range killUsers {
		to := killUsers[(i+1)%len(killUsers)]
		for g := range 4 {
			wg.Go(func() {
				for n := 0; n < 1_000_000; n++ {
					m := dm(from, to, fmt.Sprintf("g%d-%d", g, n))
					es, _, err := s.Append(context.Background(), m)
					if err != nil {
						t.Errorf("Append: %v", err)
						return
					}
					line := fmt.Sprintf("stored %s %s %s %s:%d %s:%d\n", from, m.Cid, m.ID, es[0].Inbox, es[0].Seq, es[1].Inbox, es[1].Seq)
					mu.Lock()
					// Unbuffered: the line is in the pipe before the next
					// Append starts.
					_, err = os.Stdout.WriteString(line)
					mu.Unlock()
					if err != nil {
						return
					}
				}
			})
		}
	}
	wg.Wait()
	s.Close()
}

// BenchmarkAppend measures appends of DMs (two inboxes each) from 1, 100 and
// 1000 concurrent senders, each waiting for its append to be durable before
// sending the next, as an MQTT client waits for its PUBACK.
func BenchmarkAppend(b *testing.B) {
	for _, senders := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			var batches, writes atomic.Int64
			s := open(b, sqlite.Config{Path: filepath.Join(b.TempDir(), "parley.db"),
				OnBatch: func(size int, _ time.Duration, _ error) {
					batches.Add(1)
					writes.Add(int64(size))
				}})
			users := max(senders, 2)
			var wg sync.WaitGroup
			for i := range users { // concurrently, so that they share transactions
				wg.Go(func() {
					if err := s.CreateUser(ctx(b), storage.User{ID: fmt.Sprintf("u%d", i)}); err != nil {
						b.Error(err)
					}
				})
			}
			wg.Wait()
			if b.Failed() {
				b.FailNow()
			}
			batches.Store(0)
			writes.Store(0)
			data := []byte(`{"text":"a chat message of a typical length, some sixty bytes"}`)

			var next atomic.Int64
			b.ResetTimer()
			for i := range senders {
				wg.Go(func() {
					from, to := fmt.Sprintf("u%d", i), fmt.Sprintf("u%d", (i+1)%users)
					inboxes := []string{protocol.UserInbox(to), protocol.UserInbox(from)}
					for {
						n := next.Add(1)
						if n > int64(b.N) {
							return
						}
						m := storage.Message{ID: uuid.NewString(), From: from, To: to, TS: time.Now().UnixMilli(),
							Type: protocol.TypeMsg, Cid: "c" + strconv.FormatInt(n, 10), Data: data, Inboxes: inboxes}
						if _, _, err := s.Append(context.Background(), m); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
			if n := batches.Load(); n > 0 {
				b.ReportMetric(float64(writes.Load())/float64(n), "appends/batch")
			}
		})
	}
}
