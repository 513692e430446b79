// Package groupcommit is the group-commit engine that both of Parley's stores
// write through: callers queue requests, one goroutine gathers everything
// queued (up to MaxBatch, without waiting for more) and commits it in one
// transaction supplied by the store, then answers each caller. While one
// transaction commits the next batch gathers, so the cost of a commit (an
// fsync, a round trip) is shared by every write that arrived meanwhile, and
// each caller still returns only once its own write is durable.
//
// # One failure policy
//
// The engine, not each store, decides what a failed transaction means for
// the requests it carried, so that both stores behave alike:
//
//   - A request whose context ended while it was queued is answered with
//     storage.ErrUnavailable and never reaches the database.
//   - A transaction that fails with a retryable error (Config.Retryable: a
//     deadlock, a serialization failure) runs again, up to Config.Attempts.
//   - A transaction that fails with an error of the database itself
//     (Config.Unavailable: connection lost, timeout, I/O, a full disk)
//     fails every request it carried: running them again would only repeat
//     the failure, each after its own timeout.
//   - Any other failure was caused by something one request carried (a NUL
//     in a text column, a key too long for its index, a broken constraint):
//     the batch is split in halves, each committed on its own, recursively,
//     so that a poisoned request fails alone and the others are stored. A
//     single poison costs about 2·log2(batch) transactions, not one per
//     request, so a client that sends poison cannot multiply the work of a
//     batch by its size.
//
// Every request queued is answered exactly once, also those still queued when
// Close is called: Close commits them before it returns.
package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/parleychat/parley/storage"
)

// Config configures an Engine. Every field has a default.
type Config struct {
	// MaxBatch is the most requests one transaction carries. Default 512.
	MaxBatch int
	// QueueSize is how many requests may wait for the engine; Do blocks, up
	// to its context, while the queue is full. Default 4 × MaxBatch.
	QueueSize int
	// Timeout bounds each transaction (each attempt). Default 5s.
	Timeout time.Duration
	// Attempts is how many times in all a transaction that fails with a
	// retryable error runs. Default 5.
	Attempts int
	// Unavailable reports errors of the database itself, after which a
	// batch fails whole instead of being split. Default: none (every
	// failure splits the batch).
	Unavailable func(error) bool
	// Retryable reports errors after which the same transaction may simply
	// run again. Default: none.
	Retryable func(error) bool
	// Classify wraps the error of a failed transaction for the callers it
	// fails (with storage.ErrUnavailable, storage.ErrInvalid, …). Default:
	// the error as is.
	Classify func(error) error
	// OnBatch, if set, is told about every batch the engine gathered: how
	// many requests it carried, how long it took to settle, and the error
	// that failed it as one transaction (nil when it committed whole; its
	// requests may since have been committed in smaller transactions). It
	// runs on the engine's goroutine before the batch's callers are
	// answered: keep it short, and do not call the store from it. For
	// metrics.
	OnBatch func(size int, took time.Duration, err error)
	// Log receives a warning for each failed transaction. Default: discard.
	Log *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 512
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 4 * c.MaxBatch
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Attempts <= 0 {
		c.Attempts = 5
	}
	if c.Unavailable == nil {
		c.Unavailable = func(error) bool { return false }
	}
	if c.Retryable == nil {
		c.Retryable = func(error) bool { return false }
	}
	if c.Classify == nil {
		c.Classify = func(err error) error { return err }
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Result is the answer to one request of a committed transaction. Err
// concerns that request alone (an inbox that does not exist, a taken id):
// the transaction committed the others.
type Result[R any] struct {
	Value R
	Err   error
}

// CommitFunc runs one transaction carrying batch, in order. When the
// transaction commits it returns one Result per request, in the order of
// batch. When it fails it returns the error and no results, and must leave
// nothing of the batch behind: the engine may run the same requests again, in
// this batch or in smaller ones. ctx carries Config.Timeout.
type CommitFunc[Q, R any] func(ctx context.Context, batch []Q) ([]Result[R], error)

// Engine queues requests of type Q and answers each with an R or an error.
type Engine[Q, R any] struct {
	cfg    Config
	commit CommitFunc[Q, R]
	in     chan *call[Q, R]
	quit   chan struct{} // closed by Close: the engine drains in, then stops
	done   chan struct{} // closed when the engine's goroutine has returned

	mu        sync.RWMutex // guards closed; held for reading while a request is queued
	closed    bool
	closeOnce sync.Once
}

// call is one queued request and, once done is closed, its answer.
type call[Q, R any] struct {
	ctx  context.Context
	req  Q
	res  Result[R]
	done chan struct{}
}

// New starts an engine that commits through commit. Close stops it.
func New[Q, R any](cfg Config, commit CommitFunc[Q, R]) *Engine[Q, R] {
	cfg.setDefaults()
	e := &Engine[Q, R]{
		cfg: cfg, commit: commit,
		in: make(chan *call[Q, R], cfg.QueueSize), quit: make(chan struct{}), done: make(chan struct{}),
	}
	go e.run()
	return e
}

// Do queues req and returns its answer once the transaction that carried it
// has committed or failed. It returns storage.ErrClosed after Close, and an
// error wrapping storage.ErrUnavailable when ctx ends before req is queued or
// before its transaction begins. Once queued, a request is answered even if
// ctx ends later: the caller must not report a failure for a write that may
// yet commit.
func (e *Engine[Q, R]) Do(ctx context.Context, req Q) (R, error) {
	c := &call[Q, R]{ctx: ctx, req: req, done: make(chan struct{})}
	// The read lock keeps Close from stopping the engine between the check
	// and the send.
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		var zero R
		return zero, storage.ErrClosed
	}
	select {
	case e.in <- c:
		e.mu.RUnlock()
	case <-ctx.Done():
		e.mu.RUnlock()
		var zero R
		return zero, fmt.Errorf("%w: %w", storage.ErrUnavailable, ctx.Err())
	}
	<-c.done
	return c.res.Value, c.res.Err
}

// Queued returns how many requests wait for the engine (not counting the
// batch being committed). For tests and metrics.
func (e *Engine[Q, R]) Queued() int { return len(e.in) }

// Close refuses new requests, commits and answers those already queued, and
// stops the engine. It is safe to call more than once and from several
// goroutines; every call returns once the engine has stopped.
func (e *Engine[Q, R]) Close() {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		close(e.quit)
	})
	<-e.done
}

func (e *Engine[Q, R]) run() {
	defer close(e.done)
	batch := make([]*call[Q, R], 0, e.cfg.MaxBatch)
	for {
		select {
		case c := <-e.in:
			batch = e.gather(append(batch[:0], c))
			e.settle(batch)
		case <-e.quit:
			// Close has stopped new requests from being queued: answer
			// what is left, then stop.
			for {
				batch = e.gather(batch[:0])
				if len(batch) == 0 {
					return
				}
				e.settle(batch)
			}
		}
		clear(batch) // let answered requests be collected
	}
}

// gather adds queued requests to batch, without waiting, up to MaxBatch.
func (e *Engine[Q, R]) gather(batch []*call[Q, R]) []*call[Q, R] {
	for len(batch) < e.cfg.MaxBatch {
		select {
		case c := <-e.in:
			batch = append(batch, c)
		default:
			return batch
		}
	}
	return batch
}

// settle commits a batch, answers every request in it and tells OnBatch.
func (e *Engine[Q, R]) settle(batch []*call[Q, R]) {
	start := time.Now()
	live := make([]*call[Q, R], 0, len(batch))
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.res = Result[R]{Err: fmt.Errorf("%w: %w", storage.ErrUnavailable, err)}
			continue
		}
		live = append(live, c)
	}
	var err error
	if len(live) > 0 {
		if err = e.try(live); err != nil {
			e.cfg.Log.Warn("batch failed", "size", len(live), "error", err)
			e.isolate(live, err)
		}
	}
	if f := e.cfg.OnBatch; f != nil {
		f(len(batch), time.Since(start), err)
	}
	for _, c := range batch {
		close(c.done)
	}
}

// try runs one transaction for cs, again while it fails with a retryable
// error and attempts remain. When it commits it sets every result and
// returns nil; otherwise it sets none and returns the last error.
func (e *Engine[Q, R]) try(cs []*call[Q, R]) error {
	reqs := make([]Q, len(cs))
	for i, c := range cs {
		reqs[i] = c.req
	}
	for attempt := 1; ; attempt++ {
		rs, err := e.once(reqs)
		if err == nil {
			for i, c := range cs {
				c.res = rs[i]
			}
			return nil
		}
		if attempt >= e.cfg.Attempts || !e.cfg.Retryable(err) {
			return err
		}
	}
}

// errResults is a CommitFunc that broke its contract; the requests it
// carried fail, split like any other failure.
var errResults = errors.New("groupcommit: commit returned the wrong number of results")

func (e *Engine[Q, R]) once(reqs []Q) ([]Result[R], error) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.Timeout)
	defer cancel()
	rs, err := e.commit(ctx, reqs)
	if err == nil && len(rs) != len(reqs) {
		return nil, fmt.Errorf("%w: %d for %d", errResults, len(rs), len(reqs))
	}
	return rs, err
}

// isolate answers the requests of a transaction that failed with err. An
// error of the database fails them all; any other is blamed on one of them:
// the halves are committed apart, and a half that fails is split again,
// down to the single request that fails alone. isolate returns the error of
// the database when it met one, after failing every request still unsettled.
func (e *Engine[Q, R]) isolate(cs []*call[Q, R], err error) error {
	if e.cfg.Unavailable(err) {
		e.fail(cs, err)
		return err
	}
	if len(cs) == 1 {
		e.fail(cs, err)
		return nil
	}
	mid := len(cs) / 2
	halves := [2][]*call[Q, R]{cs[:mid], cs[mid:]}
	for i, part := range halves {
		perr := e.try(part)
		if perr == nil {
			continue
		}
		if len(part) > 1 {
			e.cfg.Log.Debug("part of a failed batch failed", "size", len(part), "error", perr)
		}
		if stop := e.isolate(part, perr); stop != nil {
			if i == 0 {
				e.fail(halves[1], stop)
			}
			return stop
		}
	}
	return nil
}

func (e *Engine[Q, R]) fail(cs []*call[Q, R], err error) {
	err = e.cfg.Classify(err)
	for _, c := range cs {
		c.res = Result[R]{Err: err}
	}
}
