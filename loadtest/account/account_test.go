package account

import (
	"reflect"
	"slices"
	"testing"
)

// everyone: every receiver of n must get every message.
func everyone(n int) func(sender, dest int32, fn func(int)) {
	return func(_, _ int32, fn func(int)) {
		for r := 0; r < n; r++ {
			fn(r)
		}
	}
}

func sendAll(l *SendLog, n int64, st Status) {
	for seq := int64(0); seq < n; seq++ {
		l.Sending(seq, 0)
		l.Set(seq, st)
	}
}

func TestReconcile(t *testing.T) {
	type mark struct {
		receiver int
		sender   int32
		seq      int64
	}
	inOrder := func(receivers, senders int, n int64, skip ...mark) []mark {
		var ms []mark
		for seq := int64(0); seq < n; seq++ {
			for s := 0; s < senders; s++ {
				for r := 0; r < receivers; r++ {
					m := mark{r, int32(s), seq}
					if !slices.Contains(skip, m) {
						ms = append(ms, m)
					}
				}
			}
		}
		return ms
	}
	tests := map[string]struct {
		marks []mark
		want  Result
		order []Arrival // expected result of the marks after the in-order ones
		extra []mark
	}{
		"clean": {
			marks: inOrder(2, 2, 10),
			want:  Result{Accepted: 20, Expected: 40, Delivered: 40},
		},
		"loss": {
			marks: inOrder(2, 2, 10, mark{1, 0, 5}),
			want: Result{Accepted: 20, Expected: 40, Delivered: 39, Lost: 1,
				LostSamples: []Loss{{Sender: 0, Seq: 5, Receiver: 1}}},
		},
		"duplicate": {
			marks: inOrder(2, 2, 10),
			extra: []mark{{1, 1, 3}},
			order: []Arrival{ArrivalDuplicate},
			want:  Result{Accepted: 20, Expected: 40, Delivered: 40, Duplicates: 1},
		},
		"reordering": {
			marks: inOrder(2, 2, 10, mark{0, 1, 6}),
			extra: []mark{{0, 1, 6}},
			order: []Arrival{ArrivalReordered},
			want:  Result{Accepted: 20, Expected: 40, Delivered: 40, Reordered: 1},
		},
		"unexpected": {
			marks: inOrder(2, 2, 10),
			extra: []mark{{0, 0, 42}},
			order: []Arrival{ArrivalNew},
			want:  Result{Accepted: 20, Expected: 40, Delivered: 40, Unexpected: 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			logs := []*SendLog{NewSendLog(0), NewSendLog(0)}
			sendAll(logs[0], 10, StatusAccepted)
			sendAll(logs[1], 10, StatusAccepted)
			c := NewChecklist(2)
			for _, m := range tc.marks {
				if a := c.Mark(m.receiver, m.sender, m.seq); a != ArrivalNew {
					t.Fatalf("in-order mark %+v = %v", m, a)
				}
			}
			for i, m := range tc.extra {
				if a := c.Mark(m.receiver, m.sender, m.seq); a != tc.order[i] {
					t.Errorf("mark %+v = %v, want %v", m, a, tc.order[i])
				}
			}
			got := Reconcile(logs, c, everyone(2))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Reconcile =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

func TestReconcileStatuses(t *testing.T) {
	l := NewSendLog(0)
	for seq, st := range []Status{StatusAccepted, StatusRefused, StatusWritten, StatusFailed, StatusAccepted} {
		l.Sending(int64(seq), 0)
		if st != StatusWritten {
			l.Set(int64(seq), st)
		}
	}
	l.Set(0, StatusFailed) // a late failure does not undo an accepted message
	c := NewChecklist(1)
	c.Mark(0, 0, 0)
	c.Mark(0, 0, 1) // refused, yet delivered
	c.Mark(0, 0, 3) // failed, yet delivered: in doubt, delivered
	got := Reconcile([]*SendLog{l}, c, everyone(1))
	want := Result{Accepted: 2, Expected: 2, Delivered: 1, Lost: 1, InDoubt: 2, InDoubtDelivered: 1, Unexpected: 1,
		LostSamples: []Loss{{Sender: 0, Seq: 4, Receiver: 0}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Reconcile =\n %+v\nwant\n %+v", got, want)
	}
	if c := l.Counts(); c[StatusAccepted] != 2 || c[StatusRefused] != 1 || c[StatusWritten] != 1 || c[StatusFailed] != 1 {
		t.Errorf("Counts() = %v", c)
	}
}

func TestSeqTracker(t *testing.T) {
	tests := map[string]struct {
		seqs   []int64
		arrive []Arrival
		want   SeqResult
	}{
		"clean": {
			seqs:   []int64{41, 42, 43},
			arrive: []Arrival{ArrivalNew, ArrivalNew, ArrivalNew},
			want:   SeqResult{Streams: 1, Entries: 3},
		},
		"loss": {
			seqs:   []int64{1, 2, 4},
			arrive: []Arrival{ArrivalNew, ArrivalNew, ArrivalNew},
			want:   SeqResult{Streams: 1, Entries: 3, Gaps: 1},
		},
		"duplicate": {
			seqs:   []int64{1, 2, 2, 3},
			arrive: []Arrival{ArrivalNew, ArrivalNew, ArrivalDuplicate, ArrivalNew},
			want:   SeqResult{Streams: 1, Entries: 3, Dups: 1},
		},
		"reordering": {
			seqs:   []int64{1, 3, 2, 4},
			arrive: []Arrival{ArrivalNew, ArrivalNew, ArrivalReordered, ArrivalNew},
			want:   SeqResult{Streams: 1, Entries: 4, Reordered: 1},
		},
		"older than first": {
			seqs:   []int64{5, 6, 3, 4},
			arrive: []Arrival{ArrivalNew, ArrivalNew, ArrivalReordered, ArrivalReordered},
			want:   SeqResult{Streams: 1, Entries: 4, Reordered: 2},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tr := NewSeqTracker()
			for i, s := range tc.seqs {
				if a := tr.Add("u/bob", s); a != tc.arrive[i] {
					t.Errorf("Add(%d) = %v, want %v", s, a, tc.arrive[i])
				}
			}
			if got := tr.Result(); got != tc.want {
				t.Errorf("Result() = %+v, want %+v", got, tc.want)
			}
		})
	}
}
