package schedule

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPlanOffsets(t *testing.T) {
	tests := map[string]struct {
		plan  Plan
		total int64
		want  map[int64]time.Duration
	}{
		"constant": {
			plan:  Plan{Rate: 10, Duration: time.Second},
			total: 10,
			want:  map[int64]time.Duration{0: 0, 1: 100 * time.Millisecond, 9: 900 * time.Millisecond},
		},
		"count": {
			plan:  Plan{Rate: 1000, Count: 5},
			total: 5,
			want:  map[int64]time.Duration{4: 4 * time.Millisecond},
		},
		"count and duration": {
			plan:  Plan{Rate: 10, Count: 50, Duration: time.Second},
			total: 10,
			want:  map[int64]time.Duration{9: 900 * time.Millisecond},
		},
		"ramp": {
			// 2 s ramp to 100/s: 100 messages during the ramp, then 100/s.
			plan:  Plan{Rate: 100, Ramp: 2 * time.Second, Duration: 3 * time.Second},
			total: 200,
			want:  map[int64]time.Duration{0: 0, 25: time.Second, 100: 2 * time.Second, 150: 2500 * time.Millisecond},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := tc.plan.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := tc.plan.Total(); got != tc.total {
				t.Errorf("Total() = %d, want %d", got, tc.total)
			}
			for g, want := range tc.want {
				got, ok := tc.plan.Offset(g)
				if !ok || (got-want).Abs() > time.Microsecond {
					t.Errorf("Offset(%d) = %v, %v; want %v", g, got, ok, want)
				}
			}
			if _, ok := tc.plan.Offset(tc.total); ok {
				t.Errorf("Offset(Total()) is inside the plan")
			}
			if _, ok := tc.plan.Offset(tc.total - 1); !ok {
				t.Errorf("Offset(Total()-1) is outside the plan")
			}
			var prev time.Duration
			for g := int64(1); g < tc.total; g++ {
				d, _ := tc.plan.Offset(g)
				if d < prev {
					t.Fatalf("Offset(%d) = %v < Offset(%d) = %v", g, d, g-1, prev)
				}
				prev = d
			}
		})
	}
}

func TestPlanValidate(t *testing.T) {
	for name, p := range map[string]Plan{
		"zero rate":     {Duration: time.Second},
		"no end":        {Rate: 1},
		"negative ramp": {Rate: 1, Duration: time.Second, Ramp: -1},
	} {
		if p.Validate() == nil {
			t.Errorf("%s: Validate() = nil", name)
		}
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDriverOpenLoop stalls the publish of message 3 and checks that the
// schedule goes on regardless: later messages come due at their own times,
// wait in the backlog, and, once sent, carry their original due times, so
// their latency includes the stall.
func TestDriverOpenLoop(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	clock := NewFakeClock(start)
	release := make(chan struct{})

	var mu sync.Mutex
	var sent []Tick
	var sentAt []time.Time
	d := &Driver{
		Clock: clock,
		Plan:  Plan{Rate: 10, Duration: time.Second}, // due at 0, 100 ms, …, 900 ms
		Start: start,
		Send: func(ctx context.Context, tk Tick) {
			if tk.Seq == 3 {
				<-release // the stalled publish
			}
			mu.Lock()
			sent = append(sent, tk)
			sentAt = append(sentAt, clock.Now())
			mu.Unlock()
		},
	}
	done := make(chan Stats)
	go func() { done <- d.Run(context.Background()) }()

	nSent := func() int { mu.Lock(); defer mu.Unlock(); return len(sent) }
	// Step the clock 100 ms at a time: message i comes due at i·100 ms.
	for i := 0; i <= 6; i++ {
		if i > 0 {
			clock.Advance(100 * time.Millisecond)
		}
		want := int64(i + 1)
		waitFor(t, "schedule to advance", func() bool {
			return d.Stats().Scheduled == want && clock.Sleepers() == 1
		})
		if i < 3 {
			waitFor(t, "message sent", func() bool { return nSent() == i+1 })
		}
	}
	// Now = 600 ms: messages 0-6 are due; 3 is stuck in Send, 4-6 wait.
	if got := nSent(); got != 3 {
		t.Fatalf("sent %d messages while message 3 is stalled, want 3", got)
	}
	if got := d.Backlog(); got != 3 {
		t.Fatalf("backlog = %d, want 3 (messages 4, 5, 6)", got)
	}
	clock.Advance(time.Second) // past the end of the plan: 7, 8, 9 come due
	waitFor(t, "all due", func() bool { return d.Stats().Scheduled == 10 })
	close(release)
	st := <-done

	if st.Sent != 10 || st.Shed != 0 || st.Unsent != 0 {
		t.Fatalf("stats = %+v, want 10 sent", st)
	}
	for i, tk := range sent {
		if tk.Seq != int64(i) {
			t.Fatalf("sent[%d].Seq = %d: not in order", i, tk.Seq)
		}
		if want := start.Add(time.Duration(i) * 100 * time.Millisecond); !tk.Due.Equal(want) {
			t.Errorf("message %d due %v, want %v (the stall moved the schedule)", i, tk.Due.Sub(start), want.Sub(start))
		}
	}
	// Message 4 was due at 400 ms and went out at 1.6 s: its latency counts
	// the 1.2 s it waited behind the stalled publish.
	if lat := sentAt[4].Sub(sent[4].Due); lat != 1200*time.Millisecond {
		t.Errorf("message 4 latency from its due time = %v, want 1.2s", lat)
	}
}

func TestDriverShedsWhenBacklogFull(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	clock := NewFakeClock(start)
	release := make(chan struct{})
	entered := make(chan struct{})
	var shed []int64
	d := &Driver{
		Clock:      clock,
		Plan:       Plan{Rate: 10, Duration: time.Second},
		Start:      start,
		MaxBacklog: 2,
		Send: func(ctx context.Context, tk Tick) {
			if tk.Seq == 0 {
				close(entered)
				<-release
			}
		},
		Shed: func(tk Tick) { shed = append(shed, tk.Seq) },
	}
	done := make(chan Stats)
	go func() { done <- d.Run(context.Background()) }()
	<-entered
	clock.Advance(2 * time.Second)
	waitFor(t, "all due", func() bool { return d.Stats().Scheduled == 10 })
	close(release)
	st := <-done
	// 0 is in Send, 1 and 2 fill the backlog, 3-9 are shed.
	if st.Sent != 3 || st.Shed != 7 || len(shed) != 7 || shed[0] != 3 {
		t.Fatalf("stats = %+v, shed = %v; want 3 sent, 7 shed from 3", st, shed)
	}
}

func TestDriverStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	d := &Driver{
		Plan:  Plan{Rate: 1000, Duration: time.Hour},
		Start: time.Now(),
		Send:  func(ctx context.Context, tk Tick) {},
	}
	done := make(chan Stats)
	go func() { done <- d.Run(ctx) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case st := <-done:
		if st.Sent == 0 {
			t.Errorf("sent nothing in 20 ms at 1000/s")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
