package schedule

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxBacklog is the backlog bound a Driver uses when MaxBacklog is 0.
const DefaultMaxBacklog = 100_000

// Driver runs one stream of a Plan. Its scheduler goroutine moves each tick
// into the backlog at its due time; its sender loop (the goroutine that called
// Run) hands the ticks to Send in order. Send may block, as a publish on a
// congested connection does, without delaying the schedule.
type Driver struct {
	Clock   Clock     // default RealClock
	Plan    Plan      // must be valid
	Start   time.Time // time of offset 0
	Stream  int       // which stream of Streams this driver runs, from 0
	Streams int       // number of streams sharing the plan; default 1

	// MaxBacklog bounds the ticks waiting for the sender (default
	// DefaultMaxBacklog). When it is full, new ticks are shed: passed to Shed
	// and never sent. A shed tick means the load tester or its connection could
	// not keep up with the plan; it is reported, never hidden.
	MaxBacklog int

	// Send sends one message. It runs on the sender loop, one tick at a time,
	// in Seq order, and should return once the message is written: waiting for
	// an acknowledgement belongs in a callback.
	Send func(ctx context.Context, t Tick)
	// Shed, if set, is told about each tick dropped because the backlog was
	// full. It runs on the scheduler goroutine and must not block.
	Shed func(t Tick)

	scheduled atomic.Int64
	sent      atomic.Int64
	shed      atomic.Int64
	backlog   atomic.Int64
}

// Stats counts what a Driver did.
type Stats struct {
	Scheduled int64 // ticks that came due
	Sent      int64 // ticks handed to Send
	Shed      int64 // ticks dropped because the backlog was full
	Unsent    int64 // ticks due but still in the backlog when Run stopped
}

// Stats returns the counts so far; safe to call while Run runs.
func (d *Driver) Stats() Stats {
	return Stats{Scheduled: d.scheduled.Load(), Sent: d.sent.Load(), Shed: d.shed.Load(), Unsent: d.backlog.Load()}
}

// Backlog returns how many ticks wait for the sender.
func (d *Driver) Backlog() int64 { return d.backlog.Load() }

// Run runs the stream until every tick of the plan has been handed to Send, or
// until ctx is done, in which case ticks still in the backlog stay unsent.
// It returns the final counts.
func (d *Driver) Run(ctx context.Context) Stats {
	clock := d.Clock
	if clock == nil {
		clock = RealClock{}
	}
	streams := max(d.Streams, 1)
	q := newQueue(cmp(d.MaxBacklog, DefaultMaxBacklog))

	schedCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer q.close()
		for seq := int64(0); ; seq++ {
			off, ok := d.Plan.Offset(Index(seq, d.Stream, streams))
			if !ok {
				return
			}
			t := Tick{Seq: seq, Due: d.Start.Add(off)}
			if err := clock.SleepUntil(schedCtx, t.Due); err != nil {
				return
			}
			d.scheduled.Add(1)
			if !q.push(t) {
				d.shed.Add(1)
				if d.Shed != nil {
					d.Shed(t)
				}
				continue
			}
			d.backlog.Add(1)
		}
	}()

	for ctx.Err() == nil {
		t, ok := q.pop(ctx)
		if !ok {
			break
		}
		d.backlog.Add(-1)
		d.Send(ctx, t)
		d.sent.Add(1)
	}
	cancel()
	wg.Wait()
	return d.Stats()
}

func cmp(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// queue is the backlog: a FIFO of ticks bounded by max, filled by the
// scheduler without ever blocking it.
type queue struct {
	mu     sync.Mutex // guards the fields below
	items  []Tick
	head   int // items[head:] are waiting
	max    int
	closed bool
	signal chan struct{}
}

func newQueue(max int) *queue { return &queue{max: max, signal: make(chan struct{}, 1)} }

func (q *queue) push(t Tick) bool {
	q.mu.Lock()
	if len(q.items)-q.head >= q.max {
		q.mu.Unlock()
		return false
	}
	if q.head > 0 && q.head >= len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		q.items = q.items[:n]
		q.head = 0
	}
	q.items = append(q.items, t)
	q.mu.Unlock()
	q.wake()
	return true
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}

func (q *queue) wake() {
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// pop waits for the oldest tick. ok is false once the queue is closed and
// empty, or when ctx is done.
func (q *queue) pop(ctx context.Context) (_ Tick, ok bool) {
	for {
		q.mu.Lock()
		if q.head < len(q.items) {
			t := q.items[q.head]
			q.head++
			q.mu.Unlock()
			return t, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return Tick{}, false
		}
		select {
		case <-q.signal:
		case <-ctx.Done():
			return Tick{}, false
		}
	}
}
