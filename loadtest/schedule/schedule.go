// Package schedule decides when a load test sends each message, independently
// of how fast the server answers: an open-loop schedule.
//
// A Plan maps the g-th message of a run (counted over all streams) to an offset
// from the start. A Driver runs one stream of a Plan: a scheduler goroutine puts
// each Tick into a bounded backlog at its due time, whatever the sender is
// doing, and the sender takes ticks from the backlog in order. A publish that
// stalls (no PUBACK, or a write blocked on a full socket buffer) therefore never
// moves later due times; the ticks wait in the backlog and their latency, which
// callers measure from Tick.Due, includes the wait. This avoids coordinated
// omission: a closed-loop sender would quietly send less while the server is
// slow and report only the latencies of the messages it still managed to send.
package schedule

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Plan is an open-loop sending schedule: Rate messages per second in total,
// reached by a linear ramp from zero over Ramp, for Duration (ramp included)
// or until Count messages, whichever comes first.
type Plan struct {
	Rate     float64       // messages per second over all streams at full speed; must be > 0
	Ramp     time.Duration // linear ramp from 0 to Rate; 0 starts at full rate
	Duration time.Duration // sending window, ramp included; 0: no limit (Count must be set)
	Count    int64         // number of messages; 0: no limit (Duration must be set)
}

// ErrInvalidPlan is returned by Validate for a plan that cannot be run.
var ErrInvalidPlan = errors.New("invalid plan")

// Validate reports whether the plan can be run.
func (p Plan) Validate() error {
	switch {
	case !(p.Rate > 0) || math.IsInf(p.Rate, 0):
		return fmt.Errorf("%w: rate must be > 0, got %v", ErrInvalidPlan, p.Rate)
	case p.Duration < 0 || p.Count < 0 || (p.Duration == 0 && p.Count == 0):
		return fmt.Errorf("%w: need a duration > 0 or a count > 0, got %v and %d", ErrInvalidPlan, p.Duration, p.Count)
	case p.Ramp < 0:
		return fmt.Errorf("%w: ramp must be >= 0, got %v", ErrInvalidPlan, p.Ramp)
	}
	return nil
}

// cumulative returns how many messages are due in [0, t): the integral of the
// rate, R·t²/(2·Tr) during the ramp and linear after it.
func (p Plan) cumulative(t time.Duration) float64 {
	s := t.Seconds()
	tr := p.Ramp.Seconds()
	if s <= 0 {
		return 0
	}
	if tr > 0 && s < tr {
		return p.Rate * s * s / (2 * tr)
	}
	return p.Rate*tr/2 + p.Rate*(s-tr)
}

// Total returns the number of messages the plan sends.
func (p Plan) Total() int64 {
	if p.Duration == 0 {
		return p.Count
	}
	n := int64(math.Ceil(p.cumulative(p.Duration) - 1e-9))
	if p.Count > 0 {
		n = min(n, p.Count)
	}
	return n
}

// Offset returns when message g (0-based, counted over all streams) is due,
// relative to the start of the run. ok is false when g falls after Duration.
func (p Plan) Offset(g int64) (d time.Duration, ok bool) {
	if g < 0 {
		return 0, false
	}
	x := float64(g)
	tr := p.Ramp.Seconds()
	var s float64
	if rampMsgs := p.Rate * tr / 2; tr > 0 && x < rampMsgs {
		s = math.Sqrt(2 * tr * x / p.Rate) // inverse of R·t²/(2·Tr)
	} else {
		s = tr + (x-rampMsgs)/p.Rate
	}
	d = time.Duration(s * float64(time.Second))
	if p.Count > 0 && g >= p.Count {
		return d, false
	}
	return d, p.Duration == 0 || d < p.Duration
}

// Tick is one scheduled message of a stream.
type Tick struct {
	Seq int64     // position in the stream, from 0
	Due time.Time // when the plan wants it sent; latency is measured from here
}

// Index returns the global message index of the seq-th message of stream i of
// n: streams interleave, so together they follow the plan's total rate and each
// runs at Rate/n with its own phase.
func Index(seq int64, stream, streams int) int64 {
	return seq*int64(streams) + int64(stream)
}
