package hooks

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Unit tests of the Inbox's parts, each through the MQTT a client sees, on
// the embedded store. broker/ has the end-to-end tests on both stores.

// publisher: policy, stamping, storing.
func TestPublisherRefusesWithReasonCodes(t *testing.T) {
	n := startNode(t, InboxConfig{MaxPayload: 1 << 10}, []string{"alice", "bob", "carol"}, nil)
	must(t, n.store.CreateGroup(context.Background(), storage.Group{ID: "club", Name: "club", Owner: "bob",
		Members: []storage.Member{{User: "bob", Role: "owner"}}}), "create group")
	alice := n.connect("alice", "alice-1", false)
	cases := map[string]struct {
		topic, payload string
		want           protocol.Code
	}{
		"unknown user":            {"u/nobody", "hi", protocol.CodeNoInbox},
		"not a member":            {"g/club", "hi", protocol.CodeNotAuthorized},
		"too large":               {"u/bob", strings.Repeat("x", 2<<10), protocol.CodeTooLarge},
		"bad payload":             {"u/bob", `{"body":42}`, protocol.CodeBadPayload},
		"plain topic":             {"news/today", "hi", protocol.CodeNotAuthorized},
		"another user's presence": {"p/bob", `{"status":"online"}`, protocol.CodeNotAuthorized},
		"topic too deep":          {"a/b/c/d/e/f/g/h/i", "hi", protocol.CodeNoInbox},
		"stored":                  {"u/bob", "hi", protocol.CodeSuccess},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if rc := alice.publish(t, c.topic, c.payload); rc != byte(c.want) {
				t.Fatalf("PUBACK %#x, want %#x", rc, byte(c.want))
			}
		})
	}
	es, err := n.store.Read(context.Background(), "u/bob", 0, 10)
	must(t, err, "read")
	if len(es) != 1 || es[0].From != "alice" || es[0].Seq != 1 {
		t.Fatalf("bob's inbox holds %+v, want the one stored message from alice at seq 1", es)
	}
}

func TestPublisherStoresARetryOnce(t *testing.T) {
	n := startNode(t, InboxConfig{}, []string{"alice", "bob"}, nil)
	bob := n.connect("bob", "bob-1", false)
	bob.subscribe(t, "u/bob")
	alice := n.connect("alice", "alice-1", false)
	for range 3 {
		if rc := alice.publish(t, "u/bob", `{"cid":"c-1","body":{"text":"once"}}`); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
	}
	next := n.commit("alice", "bob", "next")
	n.inbox.Deliver(next)
	bob.waitFor(t, "u/bob", next.Seq)
	if got := bob.seqs("u/bob", protocol.TypeMsg); !slices.Equal(got, []int64{1, next.Seq}) || next.Seq != 2 {
		t.Fatalf("bob got seqs %v (next is %d), want [1 2]: a retry is stored and delivered once", got, next.Seq)
	}
}

func TestPublisherRateLimit(t *testing.T) {
	n := startNode(t, InboxConfig{Rate: 0.001, Burst: 2}, []string{"alice", "bob"}, nil)
	alice := n.connect("alice", "alice-1", false)
	var codes []byte
	for range 3 {
		codes = append(codes, alice.publish(t, "u/bob", "hi"))
	}
	if want := []byte{0, 0, byte(protocol.CodeRateLimited)}; !slices.Equal(codes, want) {
		t.Fatalf("PUBACK codes %#v, want %#v", codes, want)
	}
}

// acks: cursors and receipts.
func TestAcksMoveTheCursorAndSendAReceipt(t *testing.T) {
	n := startNode(t, InboxConfig{CursorFlush: 10 * time.Millisecond, ReceiptDelay: time.Millisecond}, []string{"alice", "bob"}, nil)
	alice := n.connect("alice", "alice-1", false)
	alice.subscribe(t, "u/alice")
	bob := n.connect("bob", "bob-1", true)
	bob.subscribe(t, "u/bob")
	if rc := alice.publish(t, "u/bob", "hello"); rc != 0 {
		t.Fatalf("PUBACK %#x", rc)
	}
	bob.waitFor(t, "u/bob", 1)
	// paho acknowledges at once: the cursor reaches the store, and the
	// receipt reaches alice.
	testwait.Until(t, 5*time.Second, "bob's cursor stored at 1", func() bool {
		seq, err := n.store.GetCursor(context.Background(), "bob-1", "u/bob")
		return err == nil && seq == 1
	})
	testwait.Until(t, 5*time.Second, "delivered receipt at alice", func() bool {
		for _, h := range alice.received() {
			if h.Type == protocol.TypeReceipt {
				return true
			}
		}
		return false
	})
	es, err := n.store.Read(context.Background(), "u/alice", 0, 10)
	must(t, err, "read")
	var receipts []protocol.Entry
	for _, e := range es {
		if e.Type == protocol.TypeReceipt {
			receipts = append(receipts, e)
		}
	}
	if len(receipts) != 1 || !strings.Contains(string(receipts[0].Data), `"delivered"`) || receipts[0].From != "bob" {
		t.Fatalf("alice's receipts %+v, want one delivered receipt from bob", receipts)
	}
}

// members: a removed member stops receiving: at once when this node is
// told (MembershipChanged ends the subscription), and once the group cache
// expires when the change was made elsewhere (the fan-out asks members).
func TestMembersRemovalEndsDelivery(t *testing.T) {
	t.Run("told", func(t *testing.T) { testMembersRemoval(t, true) })
	t.Run("made elsewhere", func(t *testing.T) { testMembersRemoval(t, false) })
}

func testMembersRemoval(t *testing.T, told bool) {
	ttl := time.Hour
	if !told {
		ttl = time.Nanosecond
	}
	n := startNode(t, InboxConfig{GroupCacheTTL: ttl}, []string{"alice", "bob"}, nil)
	ctx := context.Background()
	must(t, n.store.CreateGroup(ctx, storage.Group{ID: "club", Name: "club", Owner: "alice",
		Members: []storage.Member{{User: "alice", Role: "owner"}, {User: "bob", Role: "member"}}}), "create group")
	bob := n.connect("bob", "bob-1", false)
	if rc := bob.subscribe(t, "g/club"); rc >= 0x80 {
		t.Fatalf("SUBACK %#x", rc)
	}
	bob.subscribe(t, "u/bob")
	alice := n.connect("alice", "alice-1", false)
	alice.subscribe(t, "g/club")
	alice.publish(t, "g/club", "one")
	bob.waitFor(t, "g/club", 1)

	must(t, n.store.RemoveMember(ctx, "club", "bob", 1), "remove member")
	if told {
		n.inbox.MembershipChanged("club", "bob")
	}
	if rc := bob.publish(t, "g/club", "still here?"); rc != byte(protocol.CodeNotAuthorized) {
		t.Fatalf("a removed member's PUBACK %#x, want %#x", rc, byte(protocol.CodeNotAuthorized))
	}
	alice.publish(t, "g/club", "two")
	// A direct message to bob, fanned out after "two" (alice's read
	// goroutine delivers one publish before it reads the next): bob's
	// connection would carry "two" before it.
	alice.publish(t, "u/bob", "dm")
	bob.waitFor(t, "u/bob", 1)
	if got := bob.seqs("g/club", protocol.TypeMsg); !slices.Equal(got, []int64{1}) {
		t.Fatalf("bob got group seqs %v after his removal, want [1]", got)
	}
}

// broker: the one place that touches mochi's internals.
func TestBrokerPacketIDsForDirectDeliveries(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{InlineClient: true})
	mq := broker{srv}
	cl := srv.NewClient(nil, "t", "c", false)
	var next uint16
	id, ok := mq.freePacketID(cl, &next)
	if !ok || id != 1<<15 {
		t.Fatalf("first id %d %v, want %d: the upper half, clear of mochi's own and clients' SUBSCRIBE ids", id, ok, 1<<15)
	}
	mq.track(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: id + 1, TopicName: "u/bob"})
	mq.track(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7, TopicName: "news"})
	if id, _ = mq.freePacketID(cl, &next); id != 1<<15+2 {
		t.Fatalf("next id %d, want %d: an id in flight is skipped", id, 1<<15+2)
	}
	next = 1<<16 - 1
	if id, _ = mq.freePacketID(cl, &next); id != 1<<15 {
		t.Fatalf("id after the last %d, want %d", id, 1<<15)
	}
	if mq.inflightLen(cl) != 2 {
		t.Fatalf("inflight %d, want 2", mq.inflightLen(cl))
	}
	mq.dropInboxInflights(cl)
	if _, ok := mq.outboundAt(cl, 7); !ok || mq.inflightLen(cl) != 1 {
		t.Fatalf("after dropping inbox deliveries: inflight %d, plain topic kept %v; want 1, true", mq.inflightLen(cl), ok)
	}
}

// sessionTable: the user's session disconnected longest is the one evicted.
func TestSessionTableEvictsTheOldestDisconnected(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{InlineClient: true})
	st := newSessionTable(2)
	mk := func(id string, stopped time.Time, closed bool) *session {
		cl := srv.NewClient(nil, "t", id, false)
		if closed {
			cl.Stop(errors.New("gone"))
		}
		s := &session{id: id, user: "bob", cl: cl, stopped: stopped}
		st.put(s)
		return s
	}
	now := time.Now()
	for _, s := range []*session{mk("a", now.Add(-time.Minute), true), mk("b", now.Add(-time.Hour), true)} {
		if v := st.track(s); v != "" {
			t.Fatalf("evicted %q within the cap", v)
		}
	}
	if v := st.track(mk("c", time.Time{}, false)); v != "b" {
		t.Fatalf("evicted %q, want b: disconnected longest", v)
	}
}

// publisher: a read marker beyond the inbox's last entry is clamped to it,
// so that it cannot mark messages stored later as read ("read by all"
// before anyone saw them).
func TestPublisherClampsReadMarkers(t *testing.T) {
	n := startNode(t, InboxConfig{}, []string{"alice", "bob"}, nil)
	ctx := context.Background()
	must(t, n.store.CreateGroup(ctx, storage.Group{ID: "club", Name: "club", Owner: "alice",
		Members: []storage.Member{{User: "alice", Role: "owner"}, {User: "bob", Role: "member"}}}), "create group")
	alice := n.connect("alice", "alice-1", false)
	bob := n.connect("bob", "bob-1", false)
	for _, text := range []string{"one", "two"} {
		if rc := alice.publish(t, "g/club", text); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
	}
	if rc := bob.publish(t, "g/club", `{"type":"read","seq":1000}`); rc != 0 {
		t.Fatalf("read marker PUBACK %#x", rc)
	}
	got, err := n.store.GetReadCursor(ctx, "bob", "g/club", "")
	must(t, err, "read cursor")
	if got != 2 {
		t.Fatalf("bob's read cursor %d, want 2: the group's last seq", got)
	}
	alice.publish(t, "g/club", "three")
	readers, err := n.store.CountReaders(ctx, "g/club", 3, "alice")
	must(t, err, "count readers")
	if readers != 0 {
		t.Fatalf("%d readers of a message stored after the marker, want 0", readers)
	}
}
