package storetest

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

func deliveryTests() map[string]func(t *testing.T, s storage.Store) {
	return map[string]func(t *testing.T, s storage.Store){
		"deliveries":            testDeliveries,
		"concurrent deliveries": testConcurrentDeliveries,
	}
}

// msgID returns a new message id, as the server makes them.
func msgID() string { return uuid.Must(uuid.NewV7()).String() }

// keys returns the keys of ds, in order.
func keys(ds []storage.Delivery) []storage.DeliveryKey {
	ks := make([]storage.DeliveryKey, len(ds))
	for i, d := range ds {
		ks[i] = d.Key()
	}
	return ks
}

// testDeliveries: a delivery is a first once, whoever records it and however
// often; group messages are counted, direct messages not; what no store can
// hold is dropped alone; Prune forgets old deliveries.
func testDeliveries(t *testing.T, s storage.Store) {
	toBob, toTeam, toCrew := msgID(), msgID(), msgID()
	team, crew := protocol.GroupInbox("team"), protocol.GroupInbox("crew")
	d := func(id, user, inbox string) storage.Delivery {
		return storage.Delivery{ID: id, User: user, Inbox: inbox}
	}
	record := func(ds ...storage.Delivery) ([]storage.DeliveryKey, map[string]int) {
		t.Helper()
		firsts, counts, err := s.RecordDeliveries(ctx(t), ds)
		if err != nil {
			t.Fatalf("RecordDeliveries(%+v): %v", ds, err)
		}
		return keys(firsts), counts
	}
	for _, c := range []struct {
		name       string
		ds         []storage.Delivery
		wantFirsts []storage.Delivery
		wantCounts map[string]int
	}{
		{"a node's batch: bob's phone and laptop both acknowledge the DM",
			[]storage.Delivery{d(toBob, "bob", "u/bob"), d(toTeam, "bob", team), d(toBob, "bob", "u/bob"),
				d(toTeam, "carol", team), d(toCrew, "bob", crew)},
			[]storage.Delivery{d(toBob, "bob", "u/bob"), d(toTeam, "bob", team), d(toTeam, "carol", team), d(toCrew, "bob", crew)},
			map[string]int{toTeam: 2, toCrew: 1}},
		{"another node: bob's other device, and dave",
			[]storage.Delivery{d(toBob, "bob", "u/bob"), d(toTeam, "dave", team), d(toTeam, "bob", team)},
			[]storage.Delivery{d(toTeam, "dave", team)},
			map[string]int{toTeam: 3}},
		{"the same again: nothing new, the same counts",
			[]storage.Delivery{d(toBob, "bob", "u/bob"), d(toTeam, "dave", team), d(toTeam, "bob", team)},
			nil,
			map[string]int{toTeam: 3}},
		{"nothing", nil, nil, nil},
	} {
		firsts, counts := record(c.ds...)
		if !slices.Equal(firsts, keys(c.wantFirsts)) {
			t.Errorf("%s: firsts %v, want %v", c.name, firsts, keys(c.wantFirsts))
		}
		if !maps.Equal(counts, c.wantCounts) {
			t.Errorf("%s: counts %v, want %v", c.name, counts, c.wantCounts)
		}
	}

	// What no store can hold is dropped; the others are recorded and
	// answered for.
	firsts, counts, err := s.RecordDeliveries(ctx(t), []storage.Delivery{d("not-a-uuid", "erin", team),
		d(strings.ToUpper(toTeam), "erin", team), d(toTeam, "bad\x00user", team), d(toTeam, "erin", team)})
	wantInvalid(t, "RecordDeliveries with bad ones", err)
	if !slices.Equal(keys(firsts), []storage.DeliveryKey{{ID: toTeam, User: "erin"}}) || counts[toTeam] != 4 {
		t.Fatalf("RecordDeliveries with bad ones = %v, %v; want erin's first, 4 of the team message", keys(firsts), counts)
	}

	// Prune forgets deliveries older than the retention: one delivered
	// again is a first again, and counted anew.
	now := time.Now()
	const day = 24 * time.Hour
	old := storage.Delivery{ID: toCrew, User: "frank", Inbox: crew, At: now.Add(-2 * day)}
	if fs, cs := record(old); len(fs) != 1 || cs[toCrew] != 2 {
		t.Fatalf("an old delivery: firsts %v, counts %v; want it first, 2 of the crew message", fs, cs)
	}
	if p, err := s.Prune(ctx(t), storage.Retention{Now: now, Deliveries: day}); err != nil || p != (storage.Pruned{Deliveries: 1}) {
		t.Fatalf("Prune of a day's deliveries = %+v, %v; want 1 deleted", p, err)
	}
	if fs, cs := record(d(toCrew, "frank", crew)); len(fs) != 1 || cs[toCrew] != 2 {
		t.Fatalf("the pruned delivery again: firsts %v, counts %v; want it first again, 2 of the crew message", fs, cs)
	}
	if fs, cs := record(d(toTeam, "carol", team)); len(fs) != 0 || cs[toTeam] != 4 {
		t.Fatalf("a kept delivery again: firsts %v, counts %v; want none, 4", fs, cs)
	}
	// Pruning everything a day later: 7 deliveries of 3 messages.
	if p, err := s.Prune(ctx(t), storage.Retention{Now: time.Now().Add(day + time.Minute), Deliveries: day}); err != nil || p != (storage.Pruned{Deliveries: 7}) {
		t.Fatalf("Prune a day later = %+v, %v; want the 7 left", p, err)
	}
}

// testConcurrentDeliveries: several nodes record the deliveries of the same
// group messages at once, in batches of different orders (each member's
// devices on several nodes). No call fails (no deadlock), each (message,
// user) is a first exactly once, and for each message some call counts
// every member: the one that read last.
func testConcurrentDeliveries(t *testing.T, s storage.Store) {
	const nodes, messages, members, batch = 6, 12, 5, 8
	team := protocol.GroupInbox("team")
	var all []storage.Delivery
	ids := make([]string, messages)
	for i := range ids {
		ids[i] = msgID()
		for u := range members {
			all = append(all, storage.Delivery{ID: ids[i], User: fmt.Sprintf("member%d", u), Inbox: team})
		}
	}
	var mu sync.Mutex // guards the two below
	firsts := map[storage.DeliveryKey]int{}
	most := map[string]int{} // message → the highest count any call returned
	var wg sync.WaitGroup
	for n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ds := slices.Clone(all)
			r := rand.New(rand.NewPCG(uint64(n), 7))
			r.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
			for b := range slices.Chunk(ds, batch) {
				fs, counts, err := s.RecordDeliveries(ctx(t), b)
				if err != nil {
					t.Errorf("node %d: RecordDeliveries: %v", n, err)
					return
				}
				mu.Lock()
				for _, f := range fs {
					firsts[f.Key()]++
				}
				for id, c := range counts {
					most[id] = max(most[id], c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, d := range all {
		if n := firsts[d.Key()]; n != 1 {
			t.Errorf("%v was a first %d times, want once", d.Key(), n)
		}
	}
	for _, id := range ids {
		if most[id] != members {
			t.Errorf("message %s: the highest count returned is %d, want all %d members", id, most[id], members)
		}
	}
}
