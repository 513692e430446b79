package schedule

import (
	"context"
	"sync"
	"time"
)

// Clock is the scheduler's time source. Tests drive a fake one.
type Clock interface {
	Now() time.Time
	// SleepUntil returns when the clock reaches t, or with ctx.Err() when ctx
	// is done first. It returns at once when t is not in the future.
	SleepUntil(ctx context.Context, t time.Time) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// preciseWindow is the last stretch before a due time that RealClock sleeps
// with a precise system sleep rather than a Go timer. An idle Go process waits
// for timers in the network poller with millisecond resolution, so a 200 µs
// timer fires after about 1 ms: a load tester using only Go timers would start
// every message up to a millisecond late and count that as server latency.
const preciseWindow = 1500 * time.Microsecond

// SleepUntil sleeps until t or until ctx is done. It sleeps on a Go timer
// until shortly before t and then, where the system allows, with nanosleep
// (about 70 µs late on Linux, against about 1 ms for a Go timer). The
// precise part ignores ctx: it lasts at most preciseWindow.
func (RealClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	if coarse := d - preciseWindow; coarse > 0 {
		timer := time.NewTimer(coarse)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	preciseSleep(time.Until(t))
	return nil
}

// FakeClock is a Clock that moves only when Advance is called.
type FakeClock struct {
	mu      sync.Mutex // guards the fields below
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan struct{}
}

// NewFakeClock returns a fake clock showing start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// SleepUntil blocks until Advance moves the clock to t or past it.
func (c *FakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.mu.Lock()
	if !t.After(c.now) {
		c.mu.Unlock()
		return ctx.Err()
	}
	ch := make(chan struct{})
	c.waiters = append(c.waiters, fakeWaiter{at: t, ch: ch})
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Advance moves the clock forward by d and wakes the sleepers it passed.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			close(w.ch)
			continue
		}
		kept = append(kept, w)
	}
	c.waiters = kept
}

// Sleepers returns how many goroutines are blocked in SleepUntil.
func (c *FakeClock) Sleepers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}
