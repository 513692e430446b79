package broker_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// In these tests the sender, the recipient and the recipient's second
// device are on different nodes of a three-node cluster: one Postgres
// database, an embedded NATS cluster of three servers, node i connected to
// NATS server i, so announcements cross NATS routes.

// seqs returns the seqs of the msg entries among ms, in arrival order.
func seqs(t *testing.T, ms []brokertest.Msg) []int64 {
	var out []int64
	for _, h := range msgs(t, ms) {
		out = append(out, h.Seq)
	}
	return out
}

// gapless fails unless got is exactly 1..n in order.
func gapless(t *testing.T, what string, got []int64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s: %d entries, want %d: %v", what, len(got), n, got)
	}
	for i, s := range got {
		if s != int64(i+1) {
			t.Fatalf("%s: entry %d has seq %d, want %d: %v", what, i, s, i+1, got)
		}
	}
}

func TestClusterDirectMessage(t *testing.T) {
	c := brokertest.StartCluster(t, 3, brokertest.Options{})
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	at, bt := n1.User("alice"), n1.User("bob")
	bobPhone := n2.MustV5("bob", bt, "bob/phone", persistent)
	bobPhone.Sub(t, "u/bob", 1)
	bobLaptop := n3.MustV5("bob", bt, "bob/laptop", persistent)
	bobLaptop.Sub(t, "u/bob", 1)
	aliceLaptop := n3.MustV5("alice", at, "alice/laptop", brokertest.V5Options{})
	aliceLaptop.Sub(t, "u/alice", 1)
	alice := n1.MustV5("alice", at, "alice/phone", brokertest.V5Options{})

	for i := range 5 {
		if rc := alice.Pub(t, "u/bob", fmt.Sprintf(`{"cid":"c-%d","body":{"text":"hi %d"}}`, i, i)); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
	}
	// Both of bob's devices, on two other nodes, get every message once.
	for name, dev := range map[string]*brokertest.V5{"bob/phone (n2)": bobPhone, "bob/laptop (n3)": bobLaptop} {
		got := dev.In.WaitN(t, 5, protocol.TypeMsg)
		hs := msgs(t, got)
		if len(hs) != 5 {
			t.Fatalf("%s: %d messages, want 5", name, len(hs))
		}
		seen := map[int64]bool{}
		for _, h := range hs {
			if h.From != "alice" || h.Inbox != "u/bob" || seen[h.Seq] {
				t.Fatalf("%s: bad or repeated entry %+v", name, h)
			}
			seen[h.Seq] = true
		}
	}
	// alice's other device gets her copies.
	if got := msgs(t, aliceLaptop.In.WaitN(t, 5, protocol.TypeMsg)); len(got) != 5 || got[0].Inbox != "u/alice" {
		t.Fatalf("sender's copies on n3: %+v", got)
	}
	// Delivered receipts, made on the nodes of bob's devices, reach alice's
	// devices on the others.
	receipted := map[string]int{}
	alice.Sub(t, "u/alice", 1)
	aliceLaptop.In.WaitFor(t, 10*time.Second, "a delivered receipt for each message", func(ms []brokertest.Msg) bool {
		clear(receipted)
		for _, m := range ms {
			e := m.Entry(t)
			if e["type"] != "receipt" || e["status"] != "delivered" {
				continue
			}
			for _, id := range e["ids"].([]any) {
				receipted[id.(string)]++
			}
		}
		return len(receipted) == 5
	})

	// Typing crosses nodes too (never stored, QoS 0).
	alice.Pub(t, "u/bob", `{"type":"typing"}`)
	bobPhone.In.WaitN(t, 1, protocol.TypeTyping)
	bobLaptop.In.WaitN(t, 1, protocol.TypeTyping)
}

// TestClusterCatchupHandover: bob's device is away while alice sends from
// another node; it comes back on a third node while alice keeps sending.
// It gets everything exactly once and in order: the backlog from the store,
// then the live entries announced by alice's node.
func TestClusterCatchupHandover(t *testing.T) {
	c := brokertest.StartCluster(t, 3, brokertest.Options{})
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	at, bt := n1.User("alice"), n1.User("bob")
	bob := n2.MustV5("bob", bt, "bob/phone", persistent)
	bob.Sub(t, "u/bob", 1)
	alice := n1.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	alice.Pub(t, "u/bob", "first")
	bob.In.WaitN(t, 1, protocol.TypeMsg)
	n2.WaitCursor(t, "bob/phone", "u/bob", 1)
	bob.Close()
	n2.WaitGone(t, "bob/phone")

	const backlog, live = 30, 60
	for i := range backlog {
		alice.Pub(t, "u/bob", fmt.Sprintf("backlog %d", i))
	}
	// alice keeps sending while bob's phone reconnects to n3 (its session
	// on n2 is gone: it starts a new one there, and its cursor in the
	// store says where it was).
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range live {
			alice.Pub(t, "u/bob", fmt.Sprintf("live %d", i))
		}
	}()
	bob2 := n3.MustV5("bob", bt, "bob/phone", persistent)
	bob2.Sub(t, "u/bob", 1)
	wg.Wait()
	got := bob2.In.WaitFor(t, 10*time.Second, "the backlog and the live entries", func(ms []brokertest.Msg) bool {
		return len(msgs(t, ms)) >= backlog+live
	})
	// Exactly once, in order: seqs 2..91 (seq 1 was acknowledged before).
	ss := seqs(t, got)
	if len(ss) != backlog+live {
		t.Fatalf("%d entries, want %d: %v", len(ss), backlog+live, ss)
	}
	seen := map[int64]bool{}
	for _, s := range ss {
		if seen[s] || s < 2 || s > backlog+live+1 {
			t.Fatalf("repeated or unexpected seq %d: %v", s, ss)
		}
		seen[s] = true
	}
	// The backlog comes in order before anything live.
	for i := range backlog {
		if ss[i] != int64(i+2) {
			t.Fatalf("backlog out of order: %v", ss)
		}
	}
}

// TestClusterGroup: a group's members on three nodes; messages from each
// node reach every member, each once, with the gapless group seqs.
func TestClusterGroup(t *testing.T) {
	c := brokertest.StartCluster(t, 3, brokertest.Options{})
	users := []string{"alice", "bob", "carol"}
	tokens := map[string]string{}
	for _, u := range users {
		tokens[u] = c.Nodes[0].User(u)
	}
	g := createGroup(t, c.Nodes[1], tokens["alice"], "Trip", "bob", "carol")
	topic := protocol.GroupInbox(g.ID)
	clients := map[string]*brokertest.V5{}
	for i, u := range users {
		cl := c.Nodes[i].MustV5(u, tokens[u], u+"/phone", persistent)
		cl.Sub(t, topic, 1)
		clients[u] = cl
	}
	for i, u := range users {
		for j := range 3 {
			if rc := clients[u].Pub(t, topic, fmt.Sprintf("%s %d (node %d)", u, j, i+1)); rc != 0 {
				t.Fatalf("PUBACK %#x", rc)
			}
		}
	}
	for _, u := range users {
		got := clients[u].In.WaitN(t, 9, protocol.TypeMsg)
		seen := map[int64]bool{}
		for _, h := range msgs(t, got) {
			if seen[h.Seq] || h.Inbox != topic {
				t.Fatalf("%s: repeated or foreign entry %+v", u, h)
			}
			seen[h.Seq] = true
		}
		if len(seen) != 9 {
			t.Fatalf("%s: %d messages, want 9", u, len(seen))
		}
	}
}

// TestClusterNATSOutage: with NATS down, publishes are still stored and
// acknowledged and same-node delivery goes on; /readyz says the bus is
// missing but keeps the node in the load balancer; when NATS is back, the
// devices on other nodes catch up on what they missed, and live delivery
// across nodes resumes.
func TestClusterNATSOutage(t *testing.T) {
	c := brokertest.StartCluster(t, 2, brokertest.Options{})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	at, bt := n1.User("alice"), n1.User("bob")
	bobFar := n2.MustV5("bob", bt, "bob/phone", persistent)
	bobFar.Sub(t, "u/bob", 1)
	bobNear := n1.MustV5("bob", bt, "bob/laptop", persistent)
	bobNear.Sub(t, "u/bob", 1)
	alice := n1.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	alice.Pub(t, "u/bob", "before")
	bobFar.In.WaitN(t, 1, protocol.TypeMsg)

	c.NATS.Stop()
	testwait.Until(t, 10*time.Second, "both nodes see NATS gone", func() bool {
		return !n1.Srv.ClusterConnected() && !n2.Srv.ClusterConnected()
	})
	var ready struct {
		Status   string
		Degraded []string
	}
	if code := n1.HTTPDo("GET", "/readyz", "", nil, &ready); code != 200 || ready.Status != "degraded" ||
		len(ready.Degraded) != 1 || ready.Degraded[0] != "bus" {
		t.Fatalf("/readyz without NATS: %d %+v, want 200 degraded [bus]", code, ready)
	}
	const during = 10
	for i := range during {
		if rc := alice.Pub(t, "u/bob", fmt.Sprintf("during %d", i)); rc != 0 {
			t.Fatalf("PUBACK during the outage: %#x", rc)
		}
	}
	// The device on alice's node has them live.
	gapless(t, "bob/laptop on n1", seqs(t, bobNear.In.WaitN(t, 1+during, protocol.TypeMsg)), 1+during)

	c.NATS.Restart()
	testwait.Until(t, 10*time.Second, "both nodes reconnected to NATS", func() bool {
		return n1.Srv.ClusterConnected() && n2.Srv.ClusterConnected()
	})
	// The far device catches up from the store (exactly what it lacks,
	// since its acknowledgements moved its cursor), then goes live.
	got := bobFar.In.WaitN(t, 1+during, protocol.TypeMsg)
	gapless(t, "bob/phone on n2 after NATS came back", seqs(t, got), 1+during)
	alice.Pub(t, "u/bob", "after")
	got = bobFar.In.WaitN(t, 2+during, protocol.TypeMsg)
	gapless(t, "bob/phone on n2, live again", seqs(t, got), 2+during)
	if code := n1.HTTPDo("GET", "/readyz", "", nil, &ready); code != 200 || ready.Status != "ready" {
		t.Fatalf("/readyz with NATS back: %d %+v", code, ready)
	}
}

// TestClusterAdminWildcard: an administrator's u/# on a node where a user
// also subscribes to its inbox gets each entry once, as does the user
// (NATS delivers a message once per matching subscription of a node).
func TestClusterAdminWildcard(t *testing.T) {
	c := brokertest.StartCluster(t, 2, brokertest.Options{})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	at, bt := n1.User("alice"), n1.User("bob")
	bob := n2.MustV5("bob", bt, "bob/phone", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	admin := n2.MustV5(brokertest.Admin, brokertest.AdminPassword, "admin/debug", brokertest.V5Options{})
	admin.Sub(t, "u/#", 1)
	alice := n1.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	for i := range 3 {
		alice.Pub(t, "u/bob", fmt.Sprintf("m%d", i))
	}
	alice.Pub(t, "u/bob", `{"type":"typing"}`) // a marker: it comes after the messages from one sender
	bob.In.WaitN(t, 1, protocol.TypeTyping)
	admin.In.WaitFor(t, 10*time.Second, "bob's copies and alice's, and the typing", func(ms []brokertest.Msg) bool {
		return len(msgs(t, ms)) >= 6 && len(ms) >= 7
	})
	gapless(t, "bob", seqs(t, bob.In.All()), 3)
	count := map[string]int{}
	for _, h := range msgs(t, admin.In.All()) {
		count[fmt.Sprintf("%s/%d", h.Inbox, h.Seq)]++
	}
	for k, n := range count {
		if n != 1 {
			t.Fatalf("admin got %s %d times", k, n)
		}
	}
	if len(count) != 6 {
		t.Fatalf("admin got %d distinct entries, want 6 (3 in u/bob, 3 in u/alice): %v", len(count), count)
	}
}

// TestClusterTakeover: a device connects with the client id it holds on
// node 1 to node 2 (its network changed, the load balancer chose another
// node). Node 1 disconnects the old connection with 0x8E (session taken
// over) and forgets the session; the device loses nothing sent meanwhile.
func TestClusterTakeover(t *testing.T) {
	c := brokertest.StartCluster(t, 2, brokertest.Options{})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	at, bt := n1.User("alice"), n1.User("bob")
	old := n1.MustV5("bob", bt, "bob/phone", persistent)
	old.Sub(t, "u/bob", 1)
	alice := n1.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	alice.Pub(t, "u/bob", "one")
	old.In.WaitN(t, 1, protocol.TypeMsg)
	n1.WaitCursor(t, "bob/phone", "u/bob", 1)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 20 {
			alice.Pub(t, "u/bob", fmt.Sprintf("during %d", i))
		}
	}()
	// The same client id, resuming its session, on the other node.
	dev := n2.MustV5("bob", bt, "bob/phone", persistent)
	dev.Sub(t, "u/bob", 1)
	select {
	case d := <-old.ServerDisconnect:
		if d.ReasonCode != 0x8E {
			t.Fatalf("old connection: DISCONNECT %#x, want 0x8E session taken over", d.ReasonCode)
		}
	case <-time.After(brokertest.Patience(10 * time.Second)):
		t.Fatal("the old connection on node 1 was not disconnected")
	}
	n1.WaitGone(t, "bob/phone")
	wg.Wait()
	// Everything after seq 1 reaches the device on node 2, once each.
	got := dev.In.WaitFor(t, 10*time.Second, "the 20 messages", func(ms []brokertest.Msg) bool {
		return len(msgs(t, ms)) >= 20
	})
	ss := seqs(t, got)
	seen := map[int64]bool{}
	for _, s := range ss {
		if seen[s] {
			t.Fatalf("seq %d twice: %v", s, ss)
		}
		seen[s] = true
	}
	for s := int64(2); s <= 21; s++ {
		if !seen[s] {
			t.Fatalf("seq %d missing: %v", s, ss)
		}
	}
	// Node 1 keeps nothing of the session: one connection is left, in the
	// cluster.
	if n1.Srv.HasSession("bob/phone") {
		t.Fatal("node 1 still holds bob/phone's session")
	}
	if !n2.Srv.Connected("bob/phone") {
		t.Fatal("bob/phone is not connected to node 2")
	}
}

// TestClusterGroupRemoval: a member removed on node 1 stops receiving the
// group at once on node 3, where it is connected: the next message, sent
// right after the removal, does not reach it. A member added on node 1 can
// subscribe on node 2 at once (no stale cache refuses it).
func TestClusterGroupRemoval(t *testing.T) {
	c := brokertest.StartCluster(t, 3, brokertest.Options{})
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	at, bt, ct, dt := n1.User("alice"), n1.User("bob"), n1.User("carol"), n1.User("dave")
	g := createGroup(t, n1, at, "Trip", "bob", "carol")
	topic := protocol.GroupInbox(g.ID)
	bob := n2.MustV5("bob", bt, "bob/phone", persistent)
	bob.Sub(t, topic, 1)
	carol := n3.MustV5("carol", ct, "carol/phone", persistent)
	carol.Sub(t, topic, 1)
	// alice's laptop on node 3 tells when node 3 has fanned out an entry.
	aliceN3 := n3.MustV5("alice", at, "alice/laptop", persistent)
	aliceN3.Sub(t, topic, 1)
	// dave, not a member yet, is refused on node 2: its cache now says so.
	dave := n2.MustV5("dave", dt, "dave/phone", persistent)
	if rc := dave.Sub(t, topic, 1); rc[0] < 0x80 {
		t.Fatalf("a non-member's SUBSCRIBE: %#x, want a refusal", rc[0])
	}
	alice := n1.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	alice.Pub(t, topic, "before")
	carol.In.WaitN(t, 1, protocol.TypeMsg)

	if code := n1.HTTPDo("DELETE", "/v1/groups/"+g.ID+"/members/carol", at, nil, nil); code != 200 && code != 204 {
		t.Fatalf("remove carol: %d", code)
	}
	if code := n1.HTTPDo("POST", "/v1/groups/"+g.ID+"/members", at, map[string]string{"user": "dave"}, nil); code != 200 {
		t.Fatalf("add dave: %d", code)
	}
	alice.Pub(t, topic, "after")
	// bob (a member throughout) has both; carol only the first.
	bob.In.WaitN(t, 2, protocol.TypeMsg)
	// dave subscribes on node 2 at once: the added member is known there.
	if rc := dave.Sub(t, topic, 1); rc[0] >= 0x80 {
		t.Fatalf("the added member's SUBSCRIBE on node 2: %#x", rc[0])
	}
	alice.Pub(t, topic, "marker")
	bob.In.WaitN(t, 3, protocol.TypeMsg)
	dave.In.WaitFor(t, 10*time.Second, "the marker", func(ms []brokertest.Msg) bool {
		for _, h := range msgs(t, ms) {
			if h.Seq > 0 {
				return true
			}
		}
		return false
	})
	// Node 3 fans out a group's entries and membership changes in the
	// order node 1 announced them: once alice's laptop there has the
	// marker, node 3 is done with "after" too, and carol did not get it.
	aliceN3.In.WaitFor(t, 10*time.Second, "the marker on node 3", func(ms []brokertest.Msg) bool {
		return len(msgs(t, ms)) >= 3
	})
	if got := msgs(t, carol.In.All()); len(got) != 1 {
		t.Fatalf("carol, removed, received %d messages: %+v", len(got), got)
	}
}

// TestClusterPrivacy: a privacy change made through node 1 ends, on node 2,
// the subscriptions to p/{user} it no longer allows.
func TestClusterPrivacy(t *testing.T) {
	c := brokertest.StartCluster(t, 2, brokertest.Options{})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	at, bt := n1.User("alice"), n1.User("bob")
	if code := n1.HTTPDo("PUT", "/v1/me/presence", at, map[string]string{"privacy": "everyone"}, nil); code != 200 {
		t.Fatalf("privacy everyone: %d", code)
	}
	bob := n2.MustV5("bob", bt, "bob/phone", brokertest.V5Options{})
	if rc := bob.Sub(t, "p/alice", 1); rc[0] >= 0x80 {
		t.Fatalf("SUBSCRIBE p/alice: %#x", rc[0])
	}
	if !n2.Srv.Subscribed("bob/phone", "p/alice") {
		t.Fatal("bob's subscription is not on node 2")
	}
	if code := n1.HTTPDo("PUT", "/v1/me/presence", at, map[string]string{"privacy": "nobody"}, nil); code != 200 {
		t.Fatalf("privacy nobody: %d", code)
	}
	testwait.Until(t, 10*time.Second, "node 2 ends bob's subscription to p/alice", func() bool {
		return !n2.Srv.Subscribed("bob/phone", "p/alice")
	})
}

// TestClusterGapRepair: an entry stored but never announced (its node died
// between the commit and the announcement; here written to the store
// directly) reaches a live device on another node once a later entry shows
// the gap: the node reads it from the store and fans it out.
func TestClusterGapRepair(t *testing.T) {
	c := brokertest.StartCluster(t, 2, brokertest.Options{})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	at, bt := n1.User("alice"), n1.User("bob")
	bob := n2.MustV5("bob", bt, "bob/phone", brokertest.V5Options{}) // a clean session: no catch-up to lean on
	bob.Sub(t, "u/bob", 1)
	alice := n1.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	alice.Pub(t, "u/bob", "one")
	bob.In.WaitN(t, 1, protocol.TypeMsg)
	// Stored, never announced.
	if _, _, err := n1.Store.Append(brokertest.Ctx(t, 5*time.Second), storage.Message{ID: uuid.NewString(), From: "alice",
		To: "bob", TS: time.Now().UnixMilli(), Type: protocol.TypeMsg, Data: protocol.TextBody("lost"),
		Inboxes: []string{"u/bob"}}); err != nil {
		t.Fatal(err)
	}
	alice.Pub(t, "u/bob", "three")
	got := bob.In.WaitN(t, 3, protocol.TypeMsg)
	seen := map[int64]bool{}
	for _, h := range msgs(t, got) {
		if seen[h.Seq] {
			t.Fatalf("seq %d twice", h.Seq)
		}
		seen[h.Seq] = true
	}
	if !seen[1] || !seen[2] || !seen[3] {
		t.Fatalf("bob has seqs %v, want 1, 2 and 3", seen)
	}
}

// TestClusterReadMarkers: bob reads on his phone (node 2); his laptop on
// node 3 learns it from his inbox, alice on node 1 gets the read receipt,
// and every node's API answers the same unread counts.
func TestClusterReadMarkers(t *testing.T) {
	c := brokertest.StartCluster(t, 3, brokertest.Options{})
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	at, bt := n1.User("alice"), n1.User("bob")
	alice := n1.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	alice.Sub(t, "u/alice", 1)
	phone := n2.MustV5("bob", bt, "bob/phone", brokertest.V5Options{})
	phone.Sub(t, "u/bob", 1)
	laptop := n3.MustV3("bob", bt, "bob/laptop", true)
	laptop.Sub(t, "u/bob", 1)
	for i := 1; i <= 3; i++ {
		alice.Pub(t, "u/bob", fmt.Sprintf("a%d", i))
	}
	phone.In.WaitN(t, 3, protocol.TypeMsg)
	if rc := phone.Pub(t, "u/bob", `{"type":"read","inbox":"u/bob","with":"alice","seq":2}`); rc != 0 {
		t.Fatalf("read marker: %#x", rc)
	}
	echo := laptop.In.WaitN(t, 1, protocol.TypeRead)[0].Entry(t)
	if echo["with"] != "alice" || echo["read_seq"] != 2.0 {
		t.Fatalf("read echo on node 3 = %v", echo)
	}
	alice.In.WaitFor(t, 10*time.Second, "a read receipt on node 1", func(ms []brokertest.Msg) bool {
		for _, m := range ms {
			if e := m.Entry(t); e["type"] == "receipt" && e["status"] == "read" && e["by"] == "bob" {
				return len(e["ids"].([]any)) == 2
			}
		}
		return false
	})
	for _, n := range c.Nodes {
		if cs := conversations(t, n, bt); cs["alice"].Unread != 1 || cs["alice"].ReadSeq != 2 {
			t.Fatalf("bob's conversations on %s: %+v", n.Name, cs)
		}
	}
}

// TestClusterSeqsAndIdempotency: two nodes write into one inbox at once:
// seqs stay gapless and unique, and a retry with the same cid through the
// other node is stored once.
func TestClusterSeqsAndIdempotency(t *testing.T) {
	c := brokertest.StartCluster(t, 2, brokertest.Options{})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	at, ct := n1.User("alice"), n1.User("carol")
	n1.User("bob")
	alice := n1.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	carol := n2.MustV5("carol", ct, "carol/phone", brokertest.V5Options{})
	const each = 40
	var wg sync.WaitGroup
	for _, s := range []*brokertest.V5{alice, carol} {
		wg.Go(func() {
			for i := range each {
				if rc := s.Pub(t, "u/bob", fmt.Sprintf(`{"cid":"c-%d","body":{"text":"%d"}}`, i, i)); rc != 0 {
					t.Errorf("PUBACK %#x", rc)
				}
			}
		})
	}
	wg.Wait()
	// alice retries her first message through the other node: stored once.
	alice2 := n2.MustV5("alice", at, "alice/laptop", brokertest.V5Options{})
	if rc := alice2.Pub(t, "u/bob", `{"cid":"c-0","body":{"text":"0"}}`); rc != 0 {
		t.Fatalf("retry PUBACK %#x", rc)
	}
	es, err := n2.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/bob", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2*each {
		t.Fatalf("u/bob holds %d entries, want %d", len(es), 2*each)
	}
	for i, e := range es {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d: not gapless", i, e.Seq)
		}
	}
}
