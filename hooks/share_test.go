package hooks

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
)

// fakeSpread stands for the cluster (cluster.Bus, tested with real nodes in
// broker/cluster_limits_test.go): it answers a settable count of nodes.
type fakeSpread struct {
	mu    sync.Mutex
	nodes int
	err   error
}

func (f *fakeSpread) UserNodes(context.Context, string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes, f.err
}

func (f *fakeSpread) set(nodes int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes, f.err = nodes, err
}

// publisher: in a cluster a user's rate is split between the nodes holding
// the user's connections.
func TestPublisherSplitsUserRate(t *testing.T) {
	spread := &fakeSpread{nodes: 2}
	cfg := InboxConfig{Rate: -1, UserRate: 0.001, UserBurst: 10, UserShareRefresh: time.Millisecond}
	n := startNode(t, cfg, []string{"alice", "bob"}, func(h *Inbox) { h.UseSpread(spread) })
	alice := n.connect("alice", "alice-1", false)
	if n.inbox.UserShare("alice") != 0 {
		t.Fatal("a share before alice published")
	}
	// The first publish has the whole burst (10 → 9) and asks for the
	// share in the background; the answer clamps the bucket to 10/2.
	if rc := alice.publish(t, "u/bob", "first"); rc != 0 {
		t.Fatalf("first publish: PUBACK %#x", rc)
	}
	testwait.Until(t, 5*time.Second, "alice's share of two nodes", func() bool { return n.inbox.UserShare("alice") == 2 })
	var codes []byte
	for range 6 {
		codes = append(codes, alice.publish(t, "u/bob", "hi"))
	}
	limited := byte(protocol.CodeRateLimited)
	if want := []byte{0, 0, 0, 0, 0, limited}; !slices.Equal(codes, want) {
		t.Fatalf("PUBACK codes %#v, want %#v: this node's share of the burst is 5", codes, want)
	}
	// No answer (NATS away): the last share stays.
	spread.set(0, errors.New("cluster bus: not connected to NATS"))
	failed := n.inbox.metrics.UserShares.WithLabelValues("error")
	testwait.Until(t, 5*time.Second, "a refresh without an answer", func() bool {
		alice.publish(t, "u/bob", "hi")
		var m dto.Metric
		must(t, failed.Write(&m), "read parley_user_share_refreshes_total")
		return m.GetCounter().GetValue() > 0
	})
	if got := n.inbox.UserShare("alice"); got != 2 {
		t.Fatalf("share %d after a refresh without an answer, want the last one (2)", got)
	}
	// alice's other node went: the next refresh gives this node the whole
	// rate again.
	spread.set(1, nil)
	testwait.Until(t, 5*time.Second, "alice's share of one node", func() bool {
		alice.publish(t, "u/bob", "hi")
		return n.inbox.UserShare("alice") == 1
	})
}

// A single node (no UseSpread) never asks, and keeps the whole rate.
func TestPublisherWithoutSpreadKeepsTheWholeUserRate(t *testing.T) {
	n := startNode(t, InboxConfig{Rate: -1, UserRate: 0.001, UserBurst: 3}, []string{"alice", "bob"}, nil)
	alice := n.connect("alice", "alice-1", false)
	var codes []byte
	for range 4 {
		codes = append(codes, alice.publish(t, "u/bob", "hi"))
	}
	if want := []byte{0, 0, 0, byte(protocol.CodeRateLimited)}; !slices.Equal(codes, want) {
		t.Fatalf("PUBACK codes %#v, want %#v", codes, want)
	}
	if got := n.inbox.UserShare("alice"); got != 0 {
		t.Fatalf("share %d on a single node, want 0 (never asked)", got)
	}
}
