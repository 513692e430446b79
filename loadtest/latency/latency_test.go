package latency

import (
	"math"
	"testing"
	"time"
)

func TestRecorder(t *testing.T) {
	r := New()
	for i := 1; i <= 1000; i++ {
		r.Record(time.Duration(i) * time.Millisecond)
	}
	r.Record(-time.Second) // counts as 0
	iv := r.Rotate()
	if iv.Count != 1001 {
		t.Fatalf("interval count = %d", iv.Count)
	}
	if math.Abs(iv.P50-500) > 1 || math.Abs(iv.P99-990) > 1 || math.Abs(iv.Max-1000) > 1 {
		t.Errorf("interval summary = %+v", iv)
	}
	if got := r.Rotate(); got.Count != 0 {
		t.Errorf("after Rotate, interval count = %d", got.Count)
	}
	r.Record(time.Hour) // clamped to 10 minutes
	s := r.Summary()
	if s.Count != 1002 || s.Min != 0 || s.Max < 599_000 {
		t.Errorf("total summary = %+v", s)
	}
}
