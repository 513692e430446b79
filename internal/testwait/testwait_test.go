package testwait

import (
	"testing"
	"time"
)

func TestUntilReturnsWhenTheConditionHolds(t *testing.T) {
	n := 0
	Until(t, time.Second, "the third check", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("cond checked %d times, want 3", n)
	}
}

// fatalRecorder stands in for a test that the deadline fails.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(string, ...any) {
	f.failed = true
	panic(f)
}

func TestUntilFailsAtTheDeadline(t *testing.T) {
	r := &fatalRecorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		Until(r, time.Millisecond, "nothing", func() bool { return false })
	}()
	if !r.failed {
		t.Fatal("Until returned for a condition that never held")
	}
}
