package push

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/parleychat/parley/storage"
)

// Acknowledgements cancel pushes through the store, not through a node's
// memory: in a cluster a recipient's device may acknowledge a message on
// node A while node B claims the message's push job. So Delivered only
// queues the fact (it runs on the device's read goroutine), a writer records
// the queue in batches (Store.RecordPushAcks, one statement each), and the
// claim of a job returns the users who acknowledged its message
// (storage.PushJob.Acked), whichever node recorded them.
//
// Timing: an acknowledgement is in the store at most AckFlush plus one write
// after the PUBACK, and a job is claimed Grace after its message was stored.
// An acknowledgement cancels the push on every node when
//
//	delivery + device round trip + AckFlush + write < Grace
//
// which the defaults (50ms, 3s) leave wide room for. One that comes later is
// "late" as it always was: the device acknowledged after the push went.
//
// The queue doubles as this node's fast path: until an acknowledgement is
// written (while it waits, is being written, or while writes fail) the
// dispatcher of the same node reads it from the queue. It buys nothing
// across nodes, and it needs no memory of its own: an entry leaves the
// queue when the store has it.

// ackKey is one acknowledgement: a device of user acknowledged message id.
type ackKey struct{ user, id string }

// ackQueue holds the acknowledgements the store does not have yet.
type ackQueue struct {
	max  int           // the most it holds: AckQueue
	full int           // how many make a batch worth writing at once: AckBatch
	kick chan struct{} // capacity 1: a batch is waiting

	mu      sync.Mutex           // guards the field below
	waiting map[ackKey]time.Time // → when it was acknowledged
}

func newAckQueue(limit, full int) *ackQueue {
	return &ackQueue{max: limit, full: full, kick: make(chan struct{}, 1), waiting: map[ackKey]time.Time{}}
}

// add queues k, acknowledged at at; it reports false when the queue is full
// and k was dropped. It never blocks.
func (q *ackQueue) add(k ackKey, at time.Time) bool {
	q.mu.Lock()
	if _, ok := q.waiting[k]; ok { // a second device of the same user
		q.mu.Unlock()
		return true
	}
	if len(q.waiting) >= q.max {
		q.mu.Unlock()
		return false
	}
	q.waiting[k] = at
	n := len(q.waiting)
	q.mu.Unlock()
	if n >= q.full {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// take returns up to n queued acknowledgements, which stay queued (and
// visible to holds) until done removes them.
func (q *ackQueue) take(n int) []storage.PushAck {
	q.mu.Lock()
	defer q.mu.Unlock()
	batch := make([]storage.PushAck, 0, min(n, len(q.waiting)))
	for k, at := range q.waiting {
		if len(batch) == n {
			break
		}
		batch = append(batch, storage.PushAck{User: k.user, ID: k.id, At: at})
	}
	return batch
}

// done removes acknowledgements the store has (or will never take).
func (q *ackQueue) done(batch []storage.PushAck) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, a := range batch {
		delete(q.waiting, ackKey{a.User, a.ID})
	}
}

// dropBefore removes the acknowledgements made before t and returns how
// many.
func (q *ackQueue) dropBefore(t time.Time) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for k, at := range q.waiting {
		if at.Before(t) {
			delete(q.waiting, k)
			n++
		}
	}
	return n
}

// holds reports which of users have an acknowledgement of message id in the
// queue: nil when none has.
func (q *ackQueue) holds(id string, users []string) map[string]bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) == 0 {
		return nil
	}
	var m map[string]bool
	for _, u := range users {
		if _, ok := q.waiting[ackKey{u, id}]; ok {
			if m == nil {
				m = map[string]bool{}
			}
			m[u] = true
		}
	}
	return m
}

// Delivered records that a device of user acknowledged message id: no push
// is sent to user for it, by whichever node claims the message's push job.
// It is hooks.InboxConfig.OnDelivered and runs on the device's read
// goroutine: it only queues the fact, under a short lock, for the writer
// (runAcks). When AckQueue facts are waiting it drops this one (counted in
// parley_push_acks_dropped_total), which can cost a needless push, never a
// message.
func (s *Service) Delivered(user, _ /* inbox */, id string) {
	if !s.acks.add(ackKey{user, id}, time.Now()) {
		s.m.acksDropped.WithLabelValues("queue_full").Inc()
	}
}

// ackWriteTimeout bounds one write of acknowledgements.
const ackWriteTimeout = 5 * time.Second

// runAcks writes the queued acknowledgements every AckFlush, and at once
// when AckBatch are waiting. A failed write is retried with backoff; what
// could not be written for Lease is dropped: by then its job has been
// claimed (and, unless this node's dispatcher cancelled it, pushed). On
// the way out it makes one last attempt.
func (s *Service) runAcks(ctx context.Context) {
	t := time.NewTicker(s.cfg.AckFlush)
	defer t.Stop()
	failures := 0
	var retryAt time.Time
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackWriteTimeout)
			err := s.flushAcks(fctx)
			cancel()
			if err != nil {
				s.log.Warn("push: acknowledgements not recorded at close", "err", err)
			}
			return
		case <-t.C:
		case <-s.acks.kick:
		}
		now := time.Now()
		if now.Before(retryAt) {
			continue
		}
		err := s.flushAcks(ctx)
		if err == nil {
			failures, retryAt = 0, time.Time{}
			continue
		}
		if ctx.Err() != nil {
			continue // closing: the last attempt follows
		}
		failures++
		retryAt = now.Add(min(s.cfg.AckFlush<<min(failures, 8), 2*time.Second))
		stale := s.acks.dropBefore(now.Add(-s.cfg.Lease))
		s.m.acksDropped.WithLabelValues("stale").Add(float64(stale))
		if failures == 1 || stale > 0 {
			s.log.Warn("push: record acknowledgements", "err", err, "failures", failures, "dropped", stale)
		}
	}
}

// flushAcks writes the queue, AckBatch acknowledgements per write, until it
// is empty or a write fails.
func (s *Service) flushAcks(ctx context.Context) error {
	for {
		batch := s.acks.take(s.cfg.AckBatch)
		if len(batch) == 0 {
			return nil
		}
		// Hooks pass the ids of stored messages and of signed-in users:
		// one no store can hold is a bug, dropped here so that retries
		// are left for the store's failures.
		valid, dropped, why := storage.ValidPushAcks(batch)
		if dropped > 0 {
			s.log.Error("push: acknowledgements dropped", "dropped", dropped, "err", why)
			s.m.acksDropped.WithLabelValues("invalid").Add(float64(dropped))
		}
		if len(valid) > 0 {
			wctx, cancel := context.WithTimeout(ctx, ackWriteTimeout)
			err := s.store.RecordPushAcks(wctx, valid)
			cancel()
			if err != nil && !errors.Is(err, storage.ErrInvalid) { // ErrInvalid: the others are recorded
				return err
			}
			s.m.acksRecorded.Add(float64(len(valid)))
		}
		s.acks.done(batch)
		if len(batch) < s.cfg.AckBatch {
			return nil
		}
	}
}
