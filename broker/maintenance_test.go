package broker_test

import (
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
)

// TestMaintenancePrunesIdempotencyKeys: the node prunes idempotency keys
// older than maintenance.dedup_age, so a retry after that is a new message,
// and says so in /metrics. (The store's Prune itself is tested by the
// storetest contract on both stores.)
func TestMaintenancePrunesIdempotencyKeys(t *testing.T) {
	for _, kind := range brokertest.Stores {
		t.Run(kind, func(t *testing.T) {
			cfg := brokertestConfig()
			cfg.Maintenance.Interval = 20 * time.Millisecond
			cfg.Maintenance.DedupAge = time.Millisecond
			n := brokertest.Start(t, brokertest.Options{Store: kind, Config: cfg})
			n.User("bob")
			alice := n.MustV5("alice", n.User("alice"), "alice", brokertest.V5Options{})
			msg := `{"cid":"c-1","body":{"text":"hello"}}`
			if rc := alice.Pub(t, "u/bob", msg); rc != 0 {
				t.Fatalf("PUBACK %#x", rc)
			}
			// Each retry is a duplicate until the key is pruned; then it is
			// stored anew.
			testwait.Until(t, 5*time.Second, "a retry stored anew", func() bool {
				if rc := alice.Pub(t, "u/bob", msg); rc != 0 {
					t.Fatalf("PUBACK %#x", rc)
				}
				last, err := n.Store.LastSeq(brokertest.Ctx(t, 5*time.Second), "u/bob")
				if err != nil || last > 2 {
					t.Fatalf("u/bob at seq %d (%v)", last, err)
				}
				return last == 2
			})
			// The prune that deleted the key counts it once it is done.
			testwait.Until(t, 5*time.Second, "parley_pruned_rows_total ≥ 1", func() bool {
				return metricValueOf(t, n, "parley_pruned_rows_total") >= 1
			})
		})
	}
}
