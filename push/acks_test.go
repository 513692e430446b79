package push_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/storage"
)

// metric returns the value of a counter of reg, summed over its labels
// (only those with the given label value when value is not "").
func metric(t *testing.T, reg *prometheus.Registry, name, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if value != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != value) {
				continue
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// queuedJobs returns a memStore holding n DM jobs to bob that are not due
// for an hour, ids msgID(1) to msgID(n).
func queuedJobs(n int) *memStore {
	st := &memStore{leased: map[string]bool{}}
	for i := 1; i <= n; i++ {
		st.jobs = append(st.jobs, storage.PushJob{ID: msgID(i), Inbox: "u/bob", Seq: int64(i), From: "alice", To: "bob",
			TS: time.Now().Add(time.Hour).UnixMilli(), Data: []byte(`{"text":"hi"}`)})
	}
	return st
}

// TestDeliveredWritesBatches: acknowledgements reach the store in writes of
// at most AckBatch, once each; a failed write is retried until it succeeds.
func TestDeliveredWritesBatches(t *testing.T) {
	st := queuedJobs(250)
	st.ackErr = fmt.Errorf("record push acks: %w", storage.ErrUnavailable)
	reg := prometheus.NewRegistry()
	s := push.NewService(push.ServiceConfig{Grace: time.Hour, AckFlush: 5 * time.Millisecond, AckBatch: 100, Registry: reg},
		st, &recorder{}, testLogger(t))
	s.Start(context.Background())
	defer s.Close()
	for i := 1; i <= 250; i++ {
		s.Delivered("bob", "u/bob", msgID(i))
		if i%10 == 0 {
			s.Delivered("bob", "u/bob", msgID(i)) // his second device
		}
	}
	testwait.Until(t, 5*time.Second, "two failed writes", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		if len(st.writes) < 2 {
			return false
		}
		st.ackErr = nil // the store is back
		return true
	})
	testwait.Until(t, 5*time.Second, "250 acknowledgements in the store", func() bool { return st.recorded() == 250 })
	st.mu.Lock()
	writes := append([]int(nil), st.writes...)
	st.mu.Unlock()
	for _, n := range writes {
		if n > 100 {
			t.Errorf("a write of %d acknowledgements, more than AckBatch (writes: %v)", n, writes)
		}
	}
	// The counter moves once the write has returned, just after the store
	// has the rows: wait for it too.
	testwait.Until(t, 5*time.Second, "parley_push_acks_recorded_total at 250", func() bool {
		return metric(t, reg, "parley_push_acks_recorded_total", "") == 250
	})
	if got := metric(t, reg, "parley_push_acks_dropped_total", ""); got != 0 {
		t.Errorf("parley_push_acks_dropped_total = %v, want 0", got)
	}
}

// TestDeliveredQueueBound: Delivered never blocks: past AckQueue waiting
// acknowledgements it drops them, counted; the others are written.
func TestDeliveredQueueBound(t *testing.T) {
	st := queuedJobs(20)
	reg := prometheus.NewRegistry()
	s := push.NewService(push.ServiceConfig{Grace: time.Hour, AckFlush: 5 * time.Millisecond, AckQueue: 10, Registry: reg},
		st, &recorder{}, testLogger(t))
	for i := 1; i <= 20; i++ { // not started: nothing is written yet
		s.Delivered("bob", "u/bob", msgID(i))
	}
	if got := metric(t, reg, "parley_push_acks_dropped_total", "queue_full"); got != 10 {
		t.Errorf("dropped %v acknowledgements, want 10", got)
	}
	s.Start(context.Background())
	defer s.Close()
	testwait.Until(t, 5*time.Second, "10 acknowledgements in the store", func() bool { return st.recorded() == 10 })
}

// TestDeliveredFlushedOnClose: Close writes what is still queued.
func TestDeliveredFlushedOnClose(t *testing.T) {
	st := queuedJobs(3)
	s := push.NewService(push.ServiceConfig{Grace: time.Hour, AckFlush: time.Hour}, st, &recorder{}, testLogger(t))
	s.Start(context.Background())
	for i := 1; i <= 3; i++ {
		s.Delivered("bob", "u/bob", msgID(i))
	}
	s.Close()
	if n := st.recorded(); n != 3 {
		t.Fatalf("%d acknowledgements in the store after Close, want 3", n)
	}
}

// TestDeliveredWhileTheStoreFails: on the node that saw it, an
// acknowledgement the store refuses still cancels the push (the queue is
// read as well as the claim), and the queue drops it after Lease.
func TestDeliveredWhileTheStoreFails(t *testing.T) {
	past := time.Now().Add(-time.Minute).UnixMilli()
	st := &memStore{leased: map[string]bool{}, ackErr: errors.New("down"),
		jobs: []storage.PushJob{
			{ID: msgID(1), Inbox: "u/bob", Seq: 1, From: "alice", To: "bob", TS: past, Data: []byte(`{"text":"seen"}`)},
			{ID: msgID(2), Inbox: "u/carol", Seq: 1, From: "alice", To: "carol", TS: past, Data: []byte(`{"text":"unseen"}`)},
		},
		profiles: map[string]storage.PushProfile{
			"bob":   {Preview: true, Devices: []storage.PushDevice{device("bob", "t-bob")}},
			"carol": {Preview: true, Devices: []storage.PushDevice{device("carol", "t-carol")}},
		}}
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	s := push.NewService(push.ServiceConfig{Grace: time.Second, Poll: 5 * time.Millisecond, AckFlush: 5 * time.Millisecond,
		Lease: 200 * time.Millisecond, Registry: reg}, st, rec, testLogger(t))
	s.Delivered("bob", "u/bob", msgID(1))
	s.Start(context.Background())
	defer s.Close()
	testwait.Until(t, 5*time.Second, "an empty queue", func() bool { return st.left() == 0 })
	if got := rec.all(); len(got) != 1 || got[0].token != "t-carol" {
		t.Fatalf("sent %+v, want carol's only", got)
	}
	testwait.Until(t, 5*time.Second, "the stale acknowledgement dropped", func() bool {
		return metric(t, reg, "parley_push_acks_dropped_total", "stale") == 1
	})
}
