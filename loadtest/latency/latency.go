// Package latency records latencies in HDR histograms, both over a whole run
// and per interval, so a load test can print a live p99 and draw percentiles
// over time without keeping every sample.
package latency

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The histograms hold microseconds from 1 µs to 10 minutes with 3 significant
// digits: 0.1% resolution, about 30 KiB each.
const (
	lowest  = 1
	highest = int64(10 * time.Minute / time.Microsecond)
	digits  = 3
)

// Summary describes a set of latencies, in milliseconds.
type Summary struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Recorder is a concurrency-safe pair of histograms: one for the whole run and
// one for the current interval.
type Recorder struct {
	mu       sync.Mutex // guards the fields below
	total    *hdrhistogram.Histogram
	interval *hdrhistogram.Histogram
	clamped  int64 // samples above the highest trackable value
}

// New returns an empty Recorder.
func New() *Recorder {
	return &Recorder{
		total:    hdrhistogram.New(lowest, highest, digits),
		interval: hdrhistogram.New(lowest, highest, digits),
	}
}

// Record adds one latency. Negative values count as 0; values beyond 10 minutes
// count as 10 minutes.
func (r *Recorder) Record(d time.Duration) {
	v := int64(d / time.Microsecond)
	r.mu.Lock()
	if v > highest {
		v = highest
		r.clamped++
	}
	v = max(v, 0)
	_ = r.total.RecordValue(v) // cannot fail: v is within range
	_ = r.interval.RecordValue(v)
	r.mu.Unlock()
}

// Rotate returns the summary of the interval since the last Rotate and starts
// a new interval.
func (r *Recorder) Rotate() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := summarize(r.interval)
	r.interval.Reset()
	return s
}

// Summary returns the summary of everything recorded.
func (r *Recorder) Summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	return summarize(r.total)
}

// Count returns the number of samples recorded.
func (r *Recorder) Count() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total.TotalCount()
}

func summarize(h *hdrhistogram.Histogram) Summary {
	if h.TotalCount() == 0 {
		return Summary{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Summary{
		Count: h.TotalCount(),
		Min:   ms(h.Min()),
		Mean:  h.Mean() / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}
