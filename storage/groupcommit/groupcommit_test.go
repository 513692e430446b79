package groupcommit_test

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/groupcommit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The fake database: requests are strings, a transaction "stores" them by
// upper-casing each. A request starting with "poison" breaks any transaction
// that carries it; "missing" fails alone inside a committed transaction;
// the transaction's outcome can also be scripted per call.
var (
	errPoison = errors.New("poisoned row")
	errDown   = errors.New("connection lost")
	errRetry  = errors.New("deadlock detected")
	errAlone  = errors.New("inbox does not exist")
)

// fakeDB records the transactions it was asked to run.
type fakeDB struct {
	mu     sync.Mutex
	txs    [][]string // every transaction attempted, in order
	script []error    // errors for the first transactions, in order (nil: run normally)
	stored []string   // every request committed, in order

	// A batch of the one request "gate" holds the engine: commit closes
	// entered, then waits for gate to close. It is not recorded.
	entered, gate chan struct{}
}

func newFakeDB(script ...error) *fakeDB {
	return &fakeDB{script: script, entered: make(chan struct{}), gate: make(chan struct{})}
}

func (db *fakeDB) commit(ctx context.Context, batch []string) ([]groupcommit.Result[string], error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("commit without a deadline")
	}
	if len(batch) == 1 && batch[0] == "gate" {
		close(db.entered)
		<-db.gate
		return []groupcommit.Result[string]{{Value: "GATE"}}, nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.txs = append(db.txs, slices.Clone(batch))
	if n := len(db.txs) - 1; n < len(db.script) && db.script[n] != nil {
		return nil, db.script[n]
	}
	rs := make([]groupcommit.Result[string], len(batch))
	for i, q := range batch {
		switch {
		case strings.HasPrefix(q, "poison"):
			return nil, fmt.Errorf("insert %q: %w", q, errPoison)
		case strings.HasPrefix(q, "down"):
			return nil, errDown
		case strings.HasPrefix(q, "missing"):
			rs[i] = groupcommit.Result[string]{Err: errAlone}
		default:
			rs[i] = groupcommit.Result[string]{Value: strings.ToUpper(q)}
		}
	}
	for i, q := range batch {
		if rs[i].Err == nil {
			db.stored = append(db.stored, q)
		}
	}
	return rs, nil
}

func (db *fakeDB) transactions() [][]string {
	db.mu.Lock()
	defer db.mu.Unlock()
	return slices.Clone(db.txs)
}

// batchOutcome is what OnBatch heard of one batch.
type batchOutcome struct {
	size int
	err  error
}

type answer struct {
	val string
	err error
}

// runBatch queues reqs so that they are certain to share one batch: a first
// request, "gate", holds the engine inside its commit until all of reqs are
// queued. It returns the answers in the order of reqs and what OnBatch heard
// of the batch of reqs.
func runBatch(t *testing.T, cfg groupcommit.Config, db *fakeDB, reqs []string) ([]answer, batchOutcome) {
	t.Helper()
	var mu sync.Mutex
	var batches []batchOutcome
	cfg.OnBatch = func(size int, _ time.Duration, err error) {
		mu.Lock()
		batches = append(batches, batchOutcome{size, err})
		mu.Unlock()
	}
	cfg.Classify = func(err error) error { return fmt.Errorf("classified: %w", err) }
	e := groupcommit.New(cfg, db.commit)
	defer e.Close()
	gated := hold(e, db)
	// Queue reqs one at a time, so that the batch keeps their order.
	answers := make([]answer, len(reqs))
	var wg sync.WaitGroup
	for i, q := range reqs {
		wg.Go(func() {
			v, err := e.Do(context.Background(), q)
			answers[i] = answer{v, err}
		})
		testwait.Until(t, 10*time.Second, fmt.Sprintf("request %d to queue", i), func() bool { return e.Queued() == i+1 })
	}
	close(db.gate)
	if err := <-gated; err != nil {
		t.Fatalf("gate: %v", err)
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 2 || batches[0].size != 1 {
		t.Fatalf("OnBatch heard of batches %v, want the gate's then one of %d", batches, len(reqs))
	}
	return answers, batches[1]
}

func TestFailurePolicy(t *testing.T) {
	retryable := func(err error) bool { return errors.Is(err, errRetry) }
	unavailable := func(err error) bool { return errors.Is(err, errDown) }
	cases := map[string]struct {
		reqs   []string
		script []error // outcomes of the first transactions after the gate's
		// want: per request, the value or the error it is answered with
		want      []error // nil: stored (answered with its upper-case self)
		batchErr  error   // what OnBatch hears
		maxTxs    int     // the most transactions the batch may take (0: any)
		wantTxs   int     // exactly this many (0: not checked)
		attempts  int
		wantStore []string
	}{
		"all commit in one transaction": {
			reqs:    []string{"a", "b", "c"},
			want:    []error{nil, nil, nil},
			wantTxs: 1,
		},
		"an error of one request in a committed transaction": {
			reqs:    []string{"a", "missing", "c"},
			want:    []error{nil, errAlone, nil},
			wantTxs: 1,
		},
		"a poisoned request fails alone": {
			reqs:     []string{"a", "b", "poison", "c", "d"},
			want:     []error{nil, nil, errPoison, nil, nil},
			batchErr: errPoison,
		},
		"two poisoned requests fail alone": {
			reqs:     []string{"poison1", "a", "b", "c", "d", "e", "poison2"},
			want:     []error{errPoison, nil, nil, nil, nil, nil, errPoison},
			batchErr: errPoison,
		},
		"a lone poisoned request": {
			reqs:     []string{"poison"},
			want:     []error{errPoison},
			batchErr: errPoison,
			wantTxs:  1,
		},
		"one poison among 64 costs about 2·log2(64) transactions": {
			reqs:     append(names("m", 40), append([]string{"poison"}, names("n", 23)...)...),
			want:     append(make([]error, 40), append([]error{errPoison}, make([]error, 23)...)...),
			batchErr: errPoison,
			maxTxs:   1 + 2*bits.Len(64),
		},
		"an unavailable database fails the whole batch, unsplit": {
			reqs:     []string{"a", "b", "c", "d"},
			script:   []error{errDown},
			want:     []error{errDown, errDown, errDown, errDown},
			batchErr: errDown,
			wantTxs:  1,
		},
		"the database going down in a second half fails that half": {
			reqs:     []string{"poison", "a", "down", "b"},
			want:     []error{errPoison, nil, errDown, errDown},
			batchErr: errPoison,
			// whole, [poison a], [poison], [a], [down b]
			wantTxs: 5,
		},
		"the database going down in a first half fails the rest unsplit": {
			reqs:     []string{"a", "down", "b", "c"},
			script:   []error{errPoison},
			want:     []error{errDown, errDown, errDown, errDown},
			batchErr: errPoison,
			wantTxs:  2, // whole (scripted to fail), [a down]
		},
		"a retryable error runs the batch again": {
			reqs:     []string{"a", "b", "c"},
			script:   []error{errRetry, errRetry},
			want:     []error{nil, nil, nil},
			attempts: 5,
			wantTxs:  3,
		},
		"a retryable error that persists splits the batch": {
			reqs:     []string{"a", "b"},
			script:   []error{errRetry, errRetry},
			want:     []error{nil, nil},
			batchErr: errRetry,
			attempts: 2,
			wantTxs:  4, // twice whole, then a and b alone
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			db := newFakeDB(c.script...)
			cfg := groupcommit.Config{MaxBatch: 128, Unavailable: unavailable, Retryable: retryable, Attempts: c.attempts}
			answers, outcome := runBatch(t, cfg, db, c.reqs)
			for i, a := range answers {
				switch w := c.want[i]; {
				case w == nil && (a.err != nil || a.val != strings.ToUpper(c.reqs[i])):
					t.Errorf("request %q: answered %q, %v; want it stored", c.reqs[i], a.val, a.err)
				case w != nil && !errors.Is(a.err, w):
					t.Errorf("request %q: answered %q, %v; want %v", c.reqs[i], a.val, a.err, w)
				case w == errAlone && strings.HasPrefix(a.err.Error(), "classified"):
					t.Errorf("request %q: its own error %v went through Classify", c.reqs[i], a.err)
				case w != nil && w != errAlone && !strings.HasPrefix(a.err.Error(), "classified"):
					t.Errorf("request %q: a transaction's error %v did not go through Classify", c.reqs[i], a.err)
				}
			}
			if outcome.size != len(c.reqs) || !errors.Is(outcome.err, c.batchErr) || (c.batchErr == nil) != (outcome.err == nil) {
				t.Errorf("OnBatch heard %d, %v; want %d, %v", outcome.size, outcome.err, len(c.reqs), c.batchErr)
			}
			txs := db.transactions()
			if c.wantTxs > 0 && len(txs) != c.wantTxs {
				t.Errorf("%d transactions, want %d: %v", len(txs), c.wantTxs, txs)
			}
			if c.maxTxs > 0 && len(txs) > c.maxTxs {
				t.Errorf("%d transactions, want at most %d", len(txs), c.maxTxs)
			}
			// What was stored is every good request once, in queue order.
			var want []string
			for i, q := range c.reqs {
				if c.want[i] == nil {
					want = append(want, q)
				}
			}
			db.mu.Lock()
			got := slices.Clone(db.stored)
			db.mu.Unlock()
			if !slices.Equal(got, want) {
				t.Errorf("stored %v, want %v", got, want)
			}
		})
	}
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// TestCanceledWhileQueued: a request whose context ends while it waits is
// answered with ErrUnavailable and never reaches the database; the rest of
// its batch commits.
func TestCanceledWhileQueued(t *testing.T) {
	db := newFakeDB()
	e := groupcommit.New(groupcommit.Config{}, db.commit)
	defer e.Close()
	hold(e, db)

	c, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		_, err := e.Do(c, "gone")
		gone <- err
	}()
	testwait.Until(t, 10*time.Second, "the request to queue", func() bool { return e.Queued() == 1 })
	kept := make(chan error, 1)
	go func() {
		_, err := e.Do(context.Background(), "kept")
		kept <- err
	}()
	testwait.Until(t, 10*time.Second, "the second request to queue", func() bool { return e.Queued() == 2 })
	cancel()
	close(db.gate)
	if err := <-gone; !errors.Is(err, storage.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled request: %v, want ErrUnavailable and Canceled", err)
	}
	if err := <-kept; err != nil {
		t.Errorf("kept request: %v", err)
	}
	for _, tx := range db.transactions() {
		if slices.Contains(tx, "gone") {
			t.Errorf("the canceled request reached the database: %v", tx)
		}
	}
}

// TestCloseAnswersQueued: requests queued when Close is called are committed
// and answered before Close returns; requests after Close get ErrClosed.
func TestCloseAnswersQueued(t *testing.T) {
	const n = 10
	db := newFakeDB()
	// The queue holds exactly n, so that a request with an ended context
	// tells whether Close has begun: ErrUnavailable (the queue is full)
	// before, ErrClosed after.
	e := groupcommit.New(groupcommit.Config{MaxBatch: 4, QueueSize: n}, db.commit)
	hold(e, db)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := e.Do(context.Background(), fmt.Sprint("q", i))
			errs <- err
		}()
	}
	testwait.Until(t, 10*time.Second, "requests to queue", func() bool { return e.Queued() == n })
	closed := make(chan struct{})
	go func() {
		e.Close()
		close(closed)
	}()
	// Close refuses new requests before it waits for the queue to drain.
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	testwait.Until(t, 10*time.Second, "Close to refuse requests", func() bool {
		_, err := e.Do(ended, "late")
		return errors.Is(err, storage.ErrClosed)
	})
	close(db.gate)
	<-closed
	db.mu.Lock()
	committed := len(db.stored)
	db.mu.Unlock()
	if committed != n {
		t.Fatalf("Close returned with %d of %d queued requests committed", committed, n)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("queued request: %v", err)
		}
	}
	for _, tx := range db.transactions() {
		if len(tx) > 4 {
			t.Errorf("a transaction of %d requests, MaxBatch is 4", len(tx))
		}
	}
	e.Close() // twice is fine
}

// TestQueueFullRespectsContext: Do gives up with ErrUnavailable when its
// context ends while the queue is full.
func TestQueueFullRespectsContext(t *testing.T) {
	db := newFakeDB()
	e := groupcommit.New(groupcommit.Config{MaxBatch: 1, QueueSize: 1}, db.commit)
	defer e.Close()
	defer close(db.gate)
	hold(e, db)
	go e.Do(context.Background(), "fills the queue") //nolint:errcheck // answered at Close
	testwait.Until(t, 10*time.Second, "the queue to fill", func() bool { return e.Queued() == 1 })
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Do(c, "x"); !errors.Is(err, storage.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Do on a full queue: %v, want ErrUnavailable", err)
	}
}

// hold queues the request "gate" and returns once the engine is inside its
// commit, held there until db.gate is closed. The gate's answer arrives on
// the returned channel.
func hold(e *groupcommit.Engine[string, string], db *fakeDB) <-chan error {
	gated := make(chan error, 1)
	go func() {
		_, err := e.Do(context.Background(), "gate")
		gated <- err
	}()
	<-db.entered
	return gated
}
