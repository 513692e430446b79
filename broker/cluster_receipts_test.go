package broker_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/protocol"
)

// Delivered receipts in a cluster are the store's facts: a message
// acknowledged by the recipient's devices on two nodes is reported once, and
// a group message's count covers the members on every node.

// receiptIDs returns, for each message id, how many delivered receipts in
// ms name it.
func receiptIDs(t *testing.T, ms []brokertest.Msg) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, m := range ms {
		if e := m.Entry(t); e["type"] == protocol.TypeReceipt && e["status"] == "delivered" {
			for _, id := range e["ids"].([]any) {
				n[id.(string)]++
			}
		}
	}
	return n
}

// TestClusterDeliveredReceiptOnce: bob's phone (n2) and laptop (n3) both
// acknowledge alice's messages (she is on n1); she gets one delivered
// receipt per message, not one per node.
//
// The test does not stop at the first receipts: it proves that each node
// has handled every acknowledgement it got before it counts. A node's
// acknowledgements become receipts in the order they came (one worker, one
// queue), and the acknowledgements of one device come in order. So each node
// is given a last message that only its device gets (the other device is
// away) and that only it can report: once alice has that receipt, the node
// has reported (or rightly not) everything its device acknowledged before.
func TestClusterDeliveredReceiptOnce(t *testing.T) {
	c := brokertest.StartCluster(t, 3, brokertest.Options{})
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	at, bt := n1.User("alice"), n1.User("bob")
	alice := n1.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	alice.Sub(t, "u/alice", 1)
	phone := n2.MustV5("bob", bt, "bob/phone", persistent)
	phone.Sub(t, "u/bob", 1)
	laptop := n3.MustV5("bob", bt, "bob/laptop", persistent)
	laptop.Sub(t, "u/bob", 1)

	const sent = 5
	for i := range sent {
		if rc := alice.Pub(t, "u/bob", fmt.Sprintf(`{"cid":"c-%d","body":{"text":"hi %d"}}`, i, i)); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
	}
	// Both devices have acknowledged everything: their cursors say so.
	phone.In.WaitN(t, sent, protocol.TypeMsg)
	laptop.In.WaitN(t, sent, protocol.TypeMsg)
	n2.WaitCursor(t, "bob/phone", "u/bob", sent)
	n3.WaitCursor(t, "bob/laptop", "u/bob", sent)

	// ids returns the ids of alice's own copies, in order.
	ids := func(n int) []string {
		var out []string
		for _, h := range msgs(t, alice.In.WaitN(t, n, protocol.TypeMsg)) {
			out = append(out, h.ID)
		}
		return out
	}
	waitReceipt := func(id, what string) {
		t.Helper()
		alice.In.WaitFor(t, 10*time.Second, what, func(ms []brokertest.Msg) bool { return receiptIDs(t, ms)[id] > 0 })
	}

	// n2's last word: a message only the phone gets.
	laptop.Close()
	n3.WaitGone(t, "bob/laptop")
	alice.Pub(t, "u/bob", `{"cid":"for-the-phone","body":{"text":"phone"}}`)
	phoneOnly := ids(sent + 1)[sent]
	waitReceipt(phoneOnly, "the receipt of the message only the phone got (from n2)")

	// n3's: the laptop comes back (and gets the phone's message, which
	// is not news to the store), the phone is away, one more message.
	phone.Close()
	n2.WaitGone(t, "bob/phone")
	laptop = n3.MustV5("bob", bt, "bob/laptop", persistent)
	laptop.Sub(t, "u/bob", 1)
	alice.Pub(t, "u/bob", `{"cid":"for-the-laptop","body":{"text":"laptop"}}`)
	all := ids(sent + 2)
	laptop.In.WaitN(t, 2, protocol.TypeMsg)
	waitReceipt(all[sent+1], "the receipt of the message only the laptop got (from n3)")

	// Every receipt either node will ever make for these messages is in
	// alice's inbox now: each message is reported exactly once.
	es, err := n1.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/alice", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	for _, e := range es {
		for id, n := range receiptIDs(t, []brokertest.Msg{{Payload: e.AppendJSON(nil)}}) {
			stored[id] += n
		}
	}
	for i, id := range all {
		if stored[id] != 1 {
			t.Errorf("message %d (%s): %d delivered receipts, want 1", i+1, id, stored[id])
		}
	}
	if len(stored) != len(all) {
		t.Errorf("receipts for %d messages, want %d: %v", len(stored), len(all), stored)
	}
}

// TestClusterGroupReceiptCounts: a group of four, the sender on n1 and the
// three others spread so that no node holds all of them (bob has a device on
// n2 and one on n3). The sender's receipts count the members on every node,
// up to 3 of 3, and never a member twice.
func TestClusterGroupReceiptCounts(t *testing.T) {
	c := brokertest.StartCluster(t, 3, brokertest.Options{})
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	tokens := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		tokens[u] = n1.User(u)
	}
	g := createGroup(t, n2, tokens["alice"], "Crew", "bob", "carol", "dave")
	topic := protocol.GroupInbox(g.ID)
	alice := n1.MustV5("alice", tokens["alice"], "alice/phone", brokertest.V5Options{})
	alice.Sub(t, "u/alice", 1)
	alice.Sub(t, topic, 1)
	members := []*brokertest.V5{
		n1.MustV5("dave", tokens["dave"], "dave/phone", persistent),
		n2.MustV5("bob", tokens["bob"], "bob/phone", persistent),
		n3.MustV5("bob", tokens["bob"], "bob/laptop", persistent),
		n3.MustV5("carol", tokens["carol"], "carol/phone", persistent),
	}
	for _, m := range members {
		m.Sub(t, topic, 1)
	}

	const sent = 3
	for i := range sent {
		if rc := alice.Pub(t, topic, fmt.Sprintf(`{"cid":"g-%d","body":{"text":"hello %d"}}`, i, i)); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
	}
	var ids []string
	for _, h := range msgs(t, alice.In.WaitN(t, sent, protocol.TypeMsg)) {
		ids = append(ids, h.ID)
	}
	for _, m := range members {
		m.In.WaitN(t, sent, protocol.TypeMsg)
	}

	// most returns, for each message, the highest count its receipts gave,
	// and fails the test on a count beyond the members or a wrong "of".
	most := func(ms []brokertest.Msg) map[string]int {
		out := map[string]int{}
		for _, m := range ms {
			e := m.Entry(t)
			if e["type"] != protocol.TypeReceipt || e["for"] != topic {
				continue
			}
			n, of := e["count"].(float64), e["of"].(float64)
			if e["status"] != "delivered" || of != 3 || n < 1 || n > 3 {
				t.Fatalf("group receipt %v: want delivered, a count of 1 to 3 of 3", e)
			}
			for _, id := range e["ids"].([]any) {
				out[id.(string)] = max(out[id.(string)], int(n))
			}
		}
		return out
	}
	got := alice.In.WaitFor(t, 10*time.Second, "receipts counting all 3 members for each message", func(ms []brokertest.Msg) bool {
		m := most(ms)
		return !slices.ContainsFunc(ids, func(id string) bool { return m[id] != 3 })
	})
	if m := most(got); len(m) != sent {
		t.Fatalf("receipts for %d messages, want %d: %v", len(m), sent, m)
	}
}
