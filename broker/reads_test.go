package broker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/protocol"
)

type convJSON struct {
	Type    string
	Peer    string
	Group   string
	Name    string
	Unread  int
	ReadSeq int64 `json:"read_seq"`
	Last    map[string]any
}

func conversations(t *testing.T, n *brokertest.Node, token string) map[string]convJSON {
	t.Helper()
	var out struct{ Conversations []convJSON }
	if code := n.HTTPDo("GET", "/v1/me/conversations", token, nil, &out); code != 200 {
		t.Fatalf("GET /v1/me/conversations: %d", code)
	}
	m := map[string]convJSON{}
	for _, c := range out.Conversations {
		m[c.Peer+c.Group] = c
	}
	return m
}

func TestReadReceipts(t *testing.T) { forEachStore(t, testReadReceipts) }

func testReadReceipts(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Sub(t, "u/alice", 1)
	phone := n.MustV5("bob", bt, "bob/phone", brokertest.V5Options{})
	phone.Sub(t, "u/bob", 1)
	laptop := n.MustV3("bob", bt, "bob/laptop", true)
	laptop.Sub(t, "u/bob", 1)
	carol := n.MustV5("carol", ct, "carol", brokertest.V5Options{})
	for i := 1; i <= 3; i++ {
		alice.Pub(t, "u/bob", fmt.Sprintf("a%d", i))
	}
	carol.Pub(t, "u/bob", "from carol")
	phone.In.WaitN(t, 4, protocol.TypeMsg)

	cs := conversations(t, n, bt)
	if cs["alice"].Unread != 3 || cs["carol"].Unread != 1 || cs["alice"].Last["body"] == nil {
		t.Fatalf("bob's conversations before reading: %+v", cs)
	}
	if rc := phone.Pub(t, "u/alice", `{"type":"read","seq":2}`); rc != 0x87 {
		t.Fatalf("marking someone else's inbox: %#x, want 0x87", rc)
	}
	// bob reads the first two of alice's messages on his phone.
	if rc := phone.Pub(t, "u/bob", `{"type":"read","inbox":"u/bob","with":"alice","seq":2}`); rc != 0 {
		t.Fatalf("read marker: %#x", rc)
	}
	// His laptop (a 3.1.1 client) learns it from his inbox.
	echo := laptop.In.WaitN(t, 1, protocol.TypeRead)[0].Entry(t)
	if echo["for"] != "u/bob" || echo["with"] != "alice" || echo["read_seq"] != 2.0 || echo["from"] != "bob" {
		t.Fatalf("read echo = %v", echo)
	}
	// alice gets a read receipt for exactly those two.
	var sent []string
	for _, m := range msgs(t, alice.In.WaitN(t, 3, protocol.TypeMsg)) {
		sent = append(sent, m.ID)
	}
	r := alice.In.WaitFor(t, 10*time.Second, "a read receipt", func(ms []brokertest.Msg) bool {
		for _, m := range ms {
			if e := m.Entry(t); e["type"] == "receipt" && e["status"] == "read" {
				return true
			}
		}
		return false
	})
	for _, m := range r {
		if e := m.Entry(t); e["type"] == "receipt" && e["status"] == "read" {
			ids := e["ids"].([]any)
			if e["by"] != "bob" || len(ids) != 2 || ids[0] != sent[0] || ids[1] != sent[1] {
				t.Fatalf("read receipt = %v, want bob reading %v", e, sent[:2])
			}
		}
	}
	cs = conversations(t, n, bt)
	if cs["alice"].Unread != 1 || cs["alice"].ReadSeq != 2 || cs["carol"].Unread != 1 {
		t.Fatalf("bob's conversations after reading alice's first two: %+v", cs)
	}
	// Reading the whole inbox reads every conversation in it.
	laptop.Pub(t, "u/bob", `{"type":"read","seq":4}`)
	deadline := time.Now().Add(5 * time.Second)
	for {
		cs = conversations(t, n, bt)
		if cs["alice"].Unread == 0 && cs["carol"].Unread == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after reading the whole inbox: %+v", cs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A marker behind the cursor changes nothing.
	if rc := phone.Pub(t, "u/bob", `{"type":"read","seq":1}`); rc != 0 {
		t.Fatalf("old read marker: %#x", rc)
	}
	if cs := conversations(t, n, bt); cs["alice"].ReadSeq != 4 {
		t.Fatalf("read cursor moved back to %d", cs["alice"].ReadSeq)
	}
}

func TestGroupReadReceiptsAndUnread(t *testing.T) { forEachStore(t, testGroupReadReceiptsAndUnread) }

func testGroupReadReceiptsAndUnread(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	g := createGroup(t, n, at, "Trip", "bob", "carol")
	topic := "g/" + g.ID
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Sub(t, "u/alice", 1)
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	carol := n.MustV5("carol", ct, "carol", brokertest.V5Options{})
	alice.Pub(t, topic, "one")
	alice.Pub(t, topic, "two") // seq 3 (seq 1 is the group's creation)
	alice.Pub(t, "u/bob", "and a DM")

	cs := conversations(t, n, bt)
	if cs[g.ID].Unread != 2 || cs[g.ID].Name != "Trip" || cs[g.ID].Type != "group" || cs["alice"].Unread != 1 {
		t.Fatalf("bob's conversations: %+v", cs)
	}
	readCount := func(want float64) {
		t.Helper()
		alice.In.WaitFor(t, 10*time.Second, fmt.Sprintf("a read receipt with count %v of 2", want), func(ms []brokertest.Msg) bool {
			for _, m := range ms {
				if e := m.Entry(t); e["type"] == "receipt" && e["status"] == "read" && e["for"] == topic && e["count"] == want && e["of"] == 2.0 {
					return true
				}
			}
			return false
		})
	}
	if rc := bob.Pub(t, topic, `{"type":"read","seq":3}`); rc != 0 {
		t.Fatalf("group read marker: %#x", rc)
	}
	readCount(1)
	carol.Pub(t, topic, `{"type":"read","seq":3}`)
	readCount(2)
	cs = conversations(t, n, bt)
	if cs[g.ID].Unread != 0 || cs[g.ID].ReadSeq != 3 || cs["alice"].Unread != 1 {
		t.Fatalf("bob's conversations after reading the group: %+v", cs)
	}
	var mine struct {
		Groups []struct {
			ReadSeq int64 `json:"read_seq"`
			LastSeq int64 `json:"last_seq"`
		}
	}
	n.HTTPDo("GET", "/v1/me/groups", bt, nil, &mine)
	if len(mine.Groups) != 1 || mine.Groups[0].ReadSeq != 3 || mine.Groups[0].LastSeq != 3 {
		t.Fatalf("GET /v1/me/groups: %+v", mine.Groups)
	}
}
