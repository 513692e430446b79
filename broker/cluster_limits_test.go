package broker_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
)

// TestClusterUserRate: alice publishes through a connection on node 1 and
// one on node 2. Her rate (limits.user_rate, user_burst) is split between
// the two nodes, so that together they allow one user's burst, not one per
// node.
func TestClusterUserRate(t *testing.T) {
	const burst, each = 10, 20
	cfg := brokertestConfig() // the connections' own limit is off (Rate -1)
	// A token every 1,000 s: within the test the burst is all there is.
	cfg.Inbox.UserRate, cfg.Inbox.UserBurst = 0.001, burst
	cfg.Inbox.RateStrikes, cfg.Inbox.StrikeWindow = 1000, time.Minute // refused, never disconnected
	c := brokertest.StartCluster(t, 2, brokertest.Options{Config: cfg})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	at := n1.User("alice")
	n1.User("bob")
	clients := []*brokertest.V5{
		n1.MustV5("alice", at, "alice/1", brokertest.V5Options{}),
		n2.MustV5("alice", at, "alice/2", brokertest.V5Options{}),
	}
	for _, cl := range clients {
		// The SUBACK comes after the node recorded the device in the
		// presence bucket (mochi counts it after CONNACK): before the first
		// publish below, both nodes are there for either node to count.
		cl.Sub(t, "u/alice", 1)
	}
	// A node learns alice's share in the background, after her first
	// publish there, which takes a token of the whole per-node burst (10
	// → 9). The share clamps the bucket to 5.
	start := time.Now()
	for i, cl := range clients {
		if rc := cl.Pub(t, "u/bob", fmt.Sprintf("first through node %d", i+1)); rc != 0 {
			t.Fatalf("first publish through node %d: PUBACK %#x", i+1, rc)
		}
	}
	testwait.Until(t, 5*time.Second, "both nodes splitting alice's rate in two", func() bool {
		return n1.Srv.UserShare("alice") == 2 && n2.Srv.UserShare("alice") == 2
	})

	var mu sync.Mutex
	codes := map[byte]int{}
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				rc := cl.Pub(t, "u/bob", fmt.Sprintf("node %d, %d", i+1, j))
				mu.Lock()
				codes[rc]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("PUBACK codes %v", codes)
	// Each node allows its share: burst/2 = 5 tokens (its bucket, 9 after
	// the first publish, clamped to 5) plus what UserRate/2 refilled since
	// the first publish, which is less than one token for 2,000 s. So the
	// two nodes together allow exactly burst (10) publishes; with no split
	// each would allow its 9 left (18 in all).
	allowed := burst + int(cfg.Inbox.UserRate*time.Since(start).Seconds())
	if codes[0] > allowed || codes[0]+codes[byte(protocol.CodeRateLimited)] != 2*each {
		t.Fatalf("PUBACK codes %v: want at most %d successes (one user's burst across two nodes), the rest 0x97",
			codes, allowed)
	}
	if codes[0] < burst {
		t.Fatalf("PUBACK codes %v: want %d successes, a share of %d on each node", codes, burst, burst/2)
	}
	es, err := n1.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/bob", 0, 100)
	if err != nil || len(es) != 2+codes[0] {
		t.Fatalf("u/bob holds %d entries (%v), want the %d acknowledged", len(es), err, 2+codes[0])
	}
}
