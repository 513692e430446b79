package hooks

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
)

// TestDeliveryInSeqOrder: entries of one inbox that reach the fan-out out
// of seq order (their storers' goroutines raced) reach the device in seq
// order.
func TestDeliveryInSeqOrder(t *testing.T) {
	n := startNode(t, InboxConfig{}, []string{"alice", "bob"}, nil)
	d := n.connect("bob", "bob-phone", false)
	if rc := d.subscribe(t, "u/bob"); rc >= 0x80 {
		t.Fatalf("SUBACK %#x", rc)
	}
	e1, e2, e3, e4 := n.commit("alice", "bob", "1"), n.commit("alice", "bob", "2"), n.commit("alice", "bob", "3"), n.commit("alice", "bob", "4")
	for _, e := range []int{0, 2, 3, 1} { // 1, then 3 and 4 before 2
		n.inbox.fan.deliver([]protocol.Entry{e1, e2, e3, e4}[e], 1)
	}
	d.waitFor(t, "u/bob", e4.Seq)
	if got := d.seqs("u/bob", "msg"); !slices.Equal(got, []int64{1, 2, 3, 4}) {
		t.Fatalf("bob received seqs %v, want 1 2 3 4", got)
	}
	if held := count(t, n.inbox.fan.metrics.Reordered); held != 2 {
		t.Fatalf("entries held: %v, want 2 (3 and 4)", held)
	}
}

// TestDeliveryReorderGivesUp: an entry whose predecessor never comes (its
// storer died before fanning it out) goes out after reorderWait, and the
// predecessor, should it come late, goes out too.
func TestDeliveryReorderGivesUp(t *testing.T) {
	n := startNode(t, InboxConfig{}, []string{"alice", "bob"}, nil)
	d := n.connect("bob", "bob-phone", false)
	if rc := d.subscribe(t, "u/bob"); rc >= 0x80 {
		t.Fatalf("SUBACK %#x", rc)
	}
	e1, e2, e3 := n.commit("alice", "bob", "1"), n.commit("alice", "bob", "2"), n.commit("alice", "bob", "3")
	n.inbox.fan.deliver(e1, 1)
	n.inbox.fan.deliver(e3, 1)
	d.waitFor(t, "u/bob", e3.Seq)
	if got := d.seqs("u/bob", "msg"); !slices.Equal(got, []int64{1, 3}) {
		t.Fatalf("bob received seqs %v, want 1 3", got)
	}
	testwait.Until(t, time.Second, "the timeout counted", func() bool {
		return count(t, n.inbox.fan.metrics.ReorderTimeouts) == 1
	})
	n.inbox.fan.deliver(e2, 1)
	d.waitFor(t, "u/bob", e2.Seq)
}

func count(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	must(t, c.Write(&m), "read a counter")
	return m.GetCounter().GetValue()
}
