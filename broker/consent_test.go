package broker_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
)

// pubReason publishes at QoS 1 and returns the PUBACK's code and reason.
func pubReason(t *testing.T, c *brokertest.V5, topic, payload string) (byte, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Patience(10*time.Second))
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		t.Fatalf("publish to %s: %v", topic, err)
	}
	reason := ""
	if pr.Properties != nil {
		reason = pr.Properties.ReasonString
	}
	return pr.ReasonCode, reason
}

func countType(t *testing.T, ms []brokertest.Msg, typ string) int {
	n := 0
	for _, m := range ms {
		if h, ok := protocol.PeekHeader(m.Payload); ok && h.Type == typ {
			n++
		}
	}
	return n
}

func hasPayload(ms []brokertest.Msg, s string) bool {
	return slices.ContainsFunc(ms, func(m brokertest.Msg) bool { return bytes.Contains(m.Payload, []byte(s)) })
}

// TestBlockDirectMessages: a blocked user's messages are refused with 0x87
// (an error entry for MQTT 3.1.1) and its typing notifications dropped; the
// blocker cannot write to whom it blocked; unblocking lets both through.
func TestBlockDirectMessages(t *testing.T) { forEachStore(t, testBlockDirectMessages) }

func testBlockDirectMessages(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	carol := n.MustV5("carol", ct, "carol", brokertest.V5Options{})

	// Before: alice's message and typing reach bob.
	alice.Pub(t, "u/bob", "before the block")
	bob.In.WaitN(t, 1, protocol.TypeMsg)

	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"PUT", "/v1/me/blocks/bob", 400},     // oneself
		{"PUT", "/v1/me/blocks/nobody", 404},  // unknown
		{"PUT", "/v1/me/blocks/Bad!Id", 400},  // not an id
		{"PUT", "/v1/me/blocks/alice", 204},   // the block
		{"PUT", "/v1/me/blocks/alice", 204},   // again: the same
		{"DELETE", "/v1/me/blocks/erin", 204}, // one not there
	} {
		if code := n.HTTPDo(c.method, c.path, bt, nil, nil); code != c.want {
			t.Fatalf("%s %s: %d, want %d", c.method, c.path, code, c.want)
		}
	}
	var list struct {
		Blocks []struct {
			User string
			At   time.Time
		}
	}
	if code := n.HTTPDo("GET", "/v1/me/blocks", bt, nil, &list); code != 200 || len(list.Blocks) != 1 ||
		list.Blocks[0].User != "alice" || list.Blocks[0].At.IsZero() {
		t.Fatalf("GET /v1/me/blocks: %d %+v", code, list)
	}

	// alice's message is refused, without the word "block".
	if rc, reason := pubReason(t, alice, "u/bob", "while blocked"); rc != 0x87 || !strings.Contains(reason, "does not accept") ||
		strings.Contains(reason, "block") {
		t.Fatalf("alice's DM to bob: %#x %q; want 0x87, \"does not accept\"", rc, reason)
	}
	// Her typing notification is acknowledged and dropped.
	if rc := alice.Pub(t, "u/bob", `{"type":"typing"}`); rc >= 0x80 {
		t.Fatalf("alice's typing to bob: %#x; want it acknowledged", rc)
	}
	// bob cannot write to alice until he unblocks her.
	if rc, reason := pubReason(t, bob, "u/alice", "from the blocker"); rc != 0x87 || !strings.Contains(reason, "unblock") {
		t.Fatalf("bob's DM to alice: %#x %q; want 0x87 saying to unblock", rc, reason)
	}
	// Others still reach bob.
	carol.Pub(t, "u/bob", "carol meanwhile")
	bob.In.WaitFor(t, 10*time.Second, "carol's message", func(ms []brokertest.Msg) bool { return hasPayload(ms, "carol meanwhile") })

	// An MQTT 3.1.1 device of alice sees the refusal as an error entry.
	v3 := n.MustV3("alice", at, "alice/v3", true)
	v3.Sub(t, "u/alice", 1)
	if err := v3.Pub(t, "u/bob", "v3 while blocked"); err != nil {
		t.Fatal(err)
	}
	if e := v3.In.WaitN(t, 1, protocol.TypeError)[0].Entry(t); e["code"] != float64(0x87) || e["topic"] != "u/bob" {
		t.Fatalf("v3 error entry %v; want code 0x87 for u/bob", e)
	}

	// Unblocked: alice's next message arrives, after which bob has seen
	// neither her refused messages nor her typing.
	if code := n.HTTPDo("DELETE", "/v1/me/blocks/alice", bt, nil, nil); code != 204 {
		t.Fatalf("unblock: %d", code)
	}
	if rc := alice.Pub(t, "u/bob", "after the unblock"); rc != 0 {
		t.Fatalf("alice's DM after the unblock: %#x", rc)
	}
	all := bob.In.WaitFor(t, 10*time.Second, "alice's message after the unblock", func(ms []brokertest.Msg) bool {
		return hasPayload(ms, "after the unblock")
	})
	if hasPayload(all, "while blocked") || countType(t, all, protocol.TypeTyping) != 0 {
		t.Fatalf("bob received what alice sent while blocked: %d typing, %d messages", countType(t, all, protocol.TypeTyping), countType(t, all, protocol.TypeMsg))
	}
	if es, err := n.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/bob", 0, 100); err != nil || holds(es, "while blocked") {
		t.Fatalf("bob's inbox holds a refused message: %v", err)
	}
	if rc := bob.Pub(t, "u/alice", "bob after the unblock"); rc != 0 {
		t.Fatalf("bob's DM after the unblock: %#x", rc)
	}
}

func holds(es []protocol.Entry, s string) bool {
	return slices.ContainsFunc(es, func(e protocol.Entry) bool { return bytes.Contains(e.Data, []byte(s)) })
}

// TestBlockPresence: a blocked user cannot see its blocker's presence,
// over MQTT or HTTP, and a subscription it holds ends at the block; the
// blocker does not see it either.
func TestBlockPresence(t *testing.T) { forEachStore(t, testBlockPresence) }

func testBlockPresence(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Sub(t, "u/alice", 1)
	if rc := alice.Sub(t, "p/bob", 1); rc[0] != 1 {
		t.Fatalf("alice subscribing p/bob before the block: %#x", rc[0])
	}
	waitPresence(t, alice.In, "p/bob", 1)
	if code := n.HTTPDo("PUT", "/v1/me/blocks/alice", bt, nil, nil); code != 204 {
		t.Fatalf("block: %d", code)
	}
	// Her subscription has ended: bob going away does not reach her.
	bob.Pub(t, "p/bob", `{"status":"away"}`)
	barrier(t, alice, "alice")
	if got := presences(t, alice.In.All(), "p/bob"); len(got) != 1 {
		t.Fatalf("alice received %+v after bob blocked her", got)
	}
	if rc := alice.Sub(t, "p/bob", 1); rc[0] != 0x87 {
		t.Fatalf("alice subscribing p/bob after the block: %#x, want 0x87", rc[0])
	}
	if got := lookup(t, n, at, "bob"); got[0].Status != "hidden" {
		t.Fatalf("GET /v1/presence of her blocker: %+v, want hidden", got)
	}
	if got := lookup(t, n, bt, "alice"); got[0].Status != "hidden" {
		t.Fatalf("GET /v1/presence of whom bob blocked: %+v, want hidden", got)
	}
	if code := n.HTTPDo("DELETE", "/v1/me/blocks/alice", bt, nil, nil); code != 204 {
		t.Fatalf("unblock: %d", code)
	}
	if rc := alice.Sub(t, "p/bob", 1); rc[0] != 1 {
		t.Fatalf("alice subscribing p/bob after the unblock: %#x", rc[0])
	}
}

// TestGroupAddConsent: who may add a user to groups (everyone, contacts,
// nobody) and blocks are enforced when a group is created and when a member
// is added, naming the users refused.
func TestGroupAddConsent(t *testing.T) { forEachStore(t, testGroupAddConsent) }

func testGroupAddConsent(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct, dt := n.User("alice"), n.User("bob"), n.User("carol"), n.User("dave")
	n.User("erin")
	var c struct {
		GroupAdds string `json:"group_adds"`
	}
	if code := n.HTTPDo("GET", "/v1/me/consent", bt, nil, &c); code != 200 || c.GroupAdds != "everyone" {
		t.Fatalf("GET /v1/me/consent: %d %+v; want everyone", code, c)
	}
	if code := n.HTTPDo("PUT", "/v1/me/consent", bt, map[string]string{"group_adds": "friends"}, nil); code != 400 {
		t.Fatalf("PUT an unknown setting: %d, want 400", code)
	}
	for token, setting := range map[string]string{bt: "contacts", ct: "nobody"} {
		if code := n.HTTPDo("PUT", "/v1/me/consent", token, map[string]string{"group_adds": setting}, &c); code != 200 || c.GroupAdds != setting {
			t.Fatalf("PUT %s: %d %+v", setting, code, c)
		}
	}
	if code := n.HTTPDo("PUT", "/v1/me/blocks/alice", dt, nil, nil); code != 204 {
		t.Fatalf("dave blocks alice: %d", code)
	}
	// bob (contacts, alice not listed), carol (nobody) and dave (blocked
	// alice) are refused; erin (everyone) is not among them.
	var e struct{ Error string }
	code := n.HTTPDo("POST", "/v1/groups", at, map[string]any{"name": "Trip", "members": []string{"bob", "carol", "dave", "erin"}}, &e)
	if code != 403 || !strings.HasSuffix(e.Error, ": bob, carol, dave") {
		t.Fatalf("create with refusing members: %d %q; want 403 naming bob, carol, dave", code, e.Error)
	}
	var gs struct{ Groups []groupJSON }
	n.HTTPDo("GET", "/v1/me/groups", at, nil, &gs)
	if len(gs.Groups) != 0 {
		t.Fatalf("a refused creation made groups: %+v", gs.Groups)
	}
	g := createGroup(t, n, at, "Trip", "erin")
	for _, who := range []string{"bob", "carol", "dave"} {
		if code := n.HTTPDo("POST", "/v1/groups/"+g.ID+"/members", at, map[string]string{"user": who}, &e); code != 403 ||
			!strings.HasSuffix(e.Error, ": "+who) {
			t.Fatalf("add %s: %d %q; want 403", who, code, e.Error)
		}
	}
	// bob lists alice: she may add him now; a member's own settings do not
	// stop another admin... but carol's "nobody" stays.
	if code := n.HTTPDo("PUT", "/v1/me/contacts/alice", bt, nil, nil); code != 204 {
		t.Fatalf("bob lists alice: %d", code)
	}
	var got groupJSON
	if code := n.HTTPDo("POST", "/v1/groups/"+g.ID+"/members", at, map[string]string{"user": "bob"}, &got); code != 200 ||
		!slices.Contains(got.Members, "bob") {
		t.Fatalf("add bob as his contact: %d %+v", code, got)
	}
	// Listing alice in a contact list does not override a block.
	if code := n.HTTPDo("PUT", "/v1/me/contacts/alice", dt, nil, nil); code != 204 {
		t.Fatal(code)
	}
	if code := n.HTTPDo("POST", "/v1/groups/"+g.ID+"/members", at, map[string]string{"user": "dave"}, nil); code != 403 {
		t.Fatalf("add dave, who blocked alice but lists her: %d, want 403", code)
	}
	// Nor does the MQTT side let a blocked user post into the blocker's
	// DMs through a group: groups are shared spaces, and bob, added as a
	// contact, writes there as any member.
	if len(got.Members) != 3 {
		t.Fatalf("members %v", got.Members)
	}
}

// TestContactList: the user's own contact list, and presence privacy
// "contacts" following it: removing a contact ends its subscription.
func TestContactList(t *testing.T) { forEachStore(t, testContactList) }

func testContactList(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	n.User("carol")
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"PUT", "/v1/me/contacts/alice", 400},
		{"PUT", "/v1/me/contacts/nobody", 404},
		{"PUT", "/v1/me/contacts/carol", 204},
		{"PUT", "/v1/me/contacts/bob", 204},
		{"DELETE", "/v1/me/contacts/carol", 204},
		{"DELETE", "/v1/me/contacts/carol", 204},
	} {
		if code := n.HTTPDo(c.method, c.path, at, nil, nil); code != c.want {
			t.Fatalf("%s %s: %d, want %d", c.method, c.path, code, c.want)
		}
	}
	var list struct{ Contacts []struct{ User string } }
	if code := n.HTTPDo("GET", "/v1/me/contacts", at, nil, &list); code != 200 || len(list.Contacts) != 1 || list.Contacts[0].User != "bob" {
		t.Fatalf("GET /v1/me/contacts: %d %+v; want bob", code, list)
	}
	if code := n.HTTPDo("GET", "/v1/me/contacts", "", nil, nil); code != 401 {
		t.Fatalf("GET /v1/me/contacts without a token: %d", code)
	}
	if code := n.HTTPDo("PUT", "/v1/me/presence", at, map[string]string{"privacy": "contacts"}, nil); code != 200 {
		t.Fatal(code)
	}
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	if rc := bob.Sub(t, "p/alice", 1); rc[0] != 1 {
		t.Fatalf("bob, alice's contact, subscribing p/alice: %#x", rc[0])
	}
	waitPresence(t, bob.In, "p/alice", 1)
	if code := n.HTTPDo("DELETE", "/v1/me/contacts/bob", at, nil, nil); code != 204 {
		t.Fatal(code)
	}
	alice.Pub(t, "p/alice", `{"status":"away"}`)
	barrier(t, bob, "bob")
	if got := presences(t, bob.In.All(), "p/alice"); len(got) != 1 {
		t.Fatalf("bob received %+v after alice removed him from her contacts", got)
	}
	if rc := bob.Sub(t, "p/alice", 1); rc[0] != 0x87 {
		t.Fatalf("bob subscribing p/alice after the removal: %#x, want 0x87", rc[0])
	}
}

// TestClusterBlock: a block made through one node applies on another at
// once, well before that node's cached block lists expire (30 s): the
// consent event tells it.
func TestClusterBlock(t *testing.T) {
	c := brokertest.StartCluster(t, 2, brokertest.Options{})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	at, bt := n1.User("alice"), n1.User("bob")
	alice := n2.MustV5("alice", at, "alice", brokertest.V5Options{})
	// Node 2 reads bob's (empty) block list for this message, and keeps it.
	if rc := alice.Pub(t, "u/bob", "before"); rc != 0 {
		t.Fatalf("DM before the block: %#x", rc)
	}
	if code := n1.HTTPDo("PUT", "/v1/me/blocks/alice", bt, nil, nil); code != 204 {
		t.Fatalf("block through node 1: %d", code)
	}
	testwait.Until(t, 2*time.Second, "node 2 to refuse alice's DM to bob", func() bool {
		rc, _ := pubReason(t, alice, "u/bob", "after")
		return rc == 0x87
	})
}
