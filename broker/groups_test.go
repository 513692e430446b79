package broker_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/protocol"
)

type groupJSON struct {
	ID      string
	Name    string
	Owner   string
	Members []string
	Roles   map[string]string
	LastSeq int64 `json:"last_seq"`
}

func createGroup(t testing.TB, n *brokertest.Node, token, name string, members ...string) groupJSON {
	t.Helper()
	var g groupJSON
	if code := n.HTTPDo("POST", "/v1/groups", token, map[string]any{"name": name, "members": members}, &g); code != 201 {
		t.Fatalf("create group: status %d", code)
	}
	return g
}

func TestGroupHTTP(t *testing.T) { forEachStore(t, testGroupHTTP) }

func testGroupHTTP(t *testing.T, o brokertest.Options) {
	o.Config.MaxGroupMembers = 4
	n := brokertest.Start(t, o)
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	n.User("dave")
	n.User("erin")
	n.User("frank")
	g := createGroup(t, n, at, "Trip", "bob", "carol")
	if g.Owner != "alice" || g.Name != "Trip" || !slices.Equal(g.Members, []string{"alice", "bob", "carol"}) ||
		g.Roles["alice"] != "owner" || g.Roles["bob"] != "member" || g.LastSeq != 1 {
		t.Fatalf("created %+v", g)
	}
	var got groupJSON
	if code := n.HTTPDo("GET", "/v1/groups/"+g.ID, bt, nil, &got); code != 200 || got.ID != g.ID {
		t.Fatalf("GET by a member: %d %+v", code, got)
	}
	if code := n.HTTPDo("GET", "/v1/groups/"+g.ID, n.Login("dave"), nil, nil); code != 404 {
		t.Fatalf("GET by a non-member: %d, want 404", code)
	}
	cases := []struct {
		name, method, path, token string
		body                      any
		want                      int
	}{
		{"member cannot add", "POST", "/v1/groups/" + g.ID + "/members", ct, map[string]string{"user": "dave"}, 403},
		{"owner adds", "POST", "/v1/groups/" + g.ID + "/members", at, map[string]string{"user": "dave"}, 200},
		{"already a member", "POST", "/v1/groups/" + g.ID + "/members", at, map[string]string{"user": "dave"}, 409},
		{"past the limit", "POST", "/v1/groups/" + g.ID + "/members", at, map[string]string{"user": "erin"}, 422},
		{"unknown user", "DELETE", "/v1/groups/" + g.ID + "/members/zed", at, nil, 404},
		{"member cannot remove another", "DELETE", "/v1/groups/" + g.ID + "/members/dave", ct, nil, 403},
		{"member leaves", "DELETE", "/v1/groups/" + g.ID + "/members/carol", ct, nil, 204},
		{"owner cannot leave", "DELETE", "/v1/groups/" + g.ID + "/members/alice", at, nil, 403},
		{"owner removes", "DELETE", "/v1/groups/" + g.ID + "/members/dave", at, nil, 204},
		{"rename", "PATCH", "/v1/groups/" + g.ID, bt, map[string]string{"name": "Road trip"}, 200},
		{"empty name", "PATCH", "/v1/groups/" + g.ID, bt, map[string]string{"name": ""}, 400},
		{"former member cannot rename", "PATCH", "/v1/groups/" + g.ID, ct, map[string]string{"name": "x"}, 404},
		{"no name", "POST", "/v1/groups", at, map[string]any{"members": []string{"bob"}}, 400},
		{"unknown member", "POST", "/v1/groups", at, map[string]any{"name": "X", "members": []string{"zed"}}, 400},
		{"too many", "POST", "/v1/groups", at, map[string]any{"name": "X", "members": []string{"bob", "carol", "dave", "erin"}}, 422},
	}
	for _, c := range cases {
		if code := n.HTTPDo(c.method, c.path, c.token, c.body, nil); code != c.want {
			t.Errorf("%s: status %d, want %d", c.name, code, c.want)
		}
	}
	var mine struct{ Groups []groupJSON }
	n.HTTPDo("GET", "/v1/me/groups", bt, nil, &mine)
	if len(mine.Groups) != 1 || mine.Groups[0].Name != "Road trip" || !slices.Equal(mine.Groups[0].Members, []string{"alice", "bob"}) {
		t.Fatalf("bob's groups: %+v", mine.Groups)
	}
	n.HTTPDo("GET", "/v1/me/groups", ct, nil, &mine)
	if len(mine.Groups) != 0 {
		t.Fatalf("carol left but still has %+v", mine.Groups)
	}
	// Every change is an entry of the group's inbox, in order.
	var page struct{ Entries []map[string]any }
	n.HTTPDo("GET", "/v1/messages?inbox=g/"+g.ID+"&after=0", bt, nil, &page)
	var types []string
	for _, e := range page.Entries {
		types = append(types, fmt.Sprint(e["type"], ":", e["user"]))
	}
	want := []string{"group_created:<nil>", "member_added:dave", "member_removed:carol", "member_removed:dave", "renamed:<nil>"}
	if !slices.Equal(types, want) {
		t.Fatalf("group events %v, want %v", types, want)
	}
	// carol, who left, reads up to her leaving.
	n.HTTPDo("GET", "/v1/messages?inbox=g/"+g.ID, ct, nil, &page)
	if len(page.Entries) != 3 || page.Entries[2]["type"] != "member_removed" {
		t.Fatalf("carol's view of the group: %v", page.Entries)
	}
	if code := n.HTTPDo("GET", "/v1/messages?inbox=g/"+g.ID, n.Login("erin"), nil, nil); code != 403 {
		t.Fatalf("a stranger reading the group: %d, want 403", code)
	}
}

func TestGroupMessaging(t *testing.T) { forEachStore(t, testGroupMessaging) }

func testGroupMessaging(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct, dt := n.User("alice"), n.User("bob"), n.User("carol"), n.User("dave")
	g := createGroup(t, n, at, "Trip", "bob", "carol")
	topic := "g/" + g.ID

	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Sub(t, "u/alice", 1)
	alice.Sub(t, topic, 1)
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, topic, 1)
	carol := n.MustV5("carol", ct, "carol/phone", persistent)
	carol.Sub(t, topic, 1)
	carol.Close() // carol is away with a persistent session

	// Outsiders can neither read nor write the group.
	dave := n.MustV5("dave", dt, "dave", brokertest.V5Options{})
	if rc := dave.Sub(t, topic, 1); rc[0] != 0x87 {
		t.Fatalf("non-member subscribing: %#x", rc[0])
	}
	if rc := dave.Pub(t, topic, "hi"); rc != 0x87 {
		t.Fatalf("non-member publishing: %#x", rc)
	}

	// Concurrent senders: every member sees the same gapless order.
	var wg sync.WaitGroup
	for _, c := range []*brokertest.V5{alice, bob} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				if rc := c.Pub(t, topic, fmt.Sprintf(`{"cid":"%d","body":{"text":"m"}}`, i)); rc != 0 {
					t.Errorf("PUBACK %#x", rc)
				}
			}
		}()
	}
	wg.Wait()
	seqsOf := func(ms []brokertest.Msg) []int64 {
		var out []int64
		for _, m := range ms {
			if h := m.Header(t); h.Type == protocol.TypeMsg && h.Inbox == topic {
				out = append(out, h.Seq)
			}
		}
		slices.Sort(out)
		return out
	}
	a := seqsOf(alice.In.WaitN(t, 30, protocol.TypeMsg))
	b := seqsOf(bob.In.WaitN(t, 30, protocol.TypeMsg))
	if len(a) != 30 || !slices.Equal(a, b) || a[0] != 2 || a[29] != 31 {
		t.Fatalf("alice saw %v, bob %v: want the same 30 gapless seqs 2..31", a, b)
	}
	// carol catches up in order when she comes back.
	carol = n.MustV5("carol", ct, "carol/phone", persistent)
	got := carol.In.WaitN(t, 30, protocol.TypeMsg)
	for i, m := range got[:30] {
		if h := m.Header(t); h.Seq != int64(i+2) {
			t.Fatalf("carol's catch-up %d: seq %d", i, h.Seq)
		}
	}
	// Typing is forwarded live and never stored.
	bob.Pub(t, topic, `{"type":"typing"}`)
	typing := alice.In.WaitN(t, 1, protocol.TypeTyping)[0].Entry(t)
	if typing["from"] != "bob" || typing["seq"] != 0.0 {
		t.Fatalf("typing = %v", typing)
	}
	if last, _ := n.Store.LastSeq(brokertest.Ctx(t, 5*time.Second), topic); last != 31 {
		t.Fatalf("group inbox at %d after typing, want 31", last)
	}
	// alice's messages were delivered to bob and carol: aggregated receipts.
	alice.In.WaitFor(t, 10*time.Second, "group receipts counting both members", func(ms []brokertest.Msg) bool {
		for _, m := range ms {
			e := m.Entry(t)
			if e["type"] == "receipt" && e["for"] == topic && e["count"] == 2.0 && e["of"] == 2.0 {
				return true
			}
		}
		return false
	})

	// Removing bob ends his subscription at once; he cannot come back.
	if code := n.HTTPDo("DELETE", "/v1/groups/"+g.ID+"/members/bob", at, nil, nil); code != 204 {
		t.Fatalf("remove bob: %d", code)
	}
	bob.In.WaitFor(t, 5*time.Second, "bob's own removal", func(ms []brokertest.Msg) bool {
		for _, m := range ms {
			if m.Header(t).Type == protocol.TypeMemberRemoved {
				return true
			}
		}
		return false
	})
	before := len(bob.In.All())
	alice.Pub(t, topic, "after bob left")
	carol.In.WaitFor(t, 5*time.Second, "the message after bob left", func(ms []brokertest.Msg) bool {
		for _, m := range ms {
			if body, ok := m.Entry(t)["body"].(map[string]any); ok && body["text"] == "after bob left" {
				return true
			}
		}
		return false
	})
	// carol has the message, so its fan-out is over; a DM to bob sent now
	// reaches him after anything that fan-out queued for him.
	bob.Sub(t, "u/bob", 1)
	alice.Pub(t, "u/bob", "barrier")
	bob.In.WaitFor(t, 5*time.Second, "the barrier DM", func(ms []brokertest.Msg) bool {
		return len(ms) > before && ms[len(ms)-1].Header(t).Inbox == "u/bob"
	})
	if len(bob.In.All()) != before+1 {
		t.Fatalf("bob still receives the group after his removal")
	}
	if rc := bob.Sub(t, topic, 1); rc[0] != 0x87 {
		t.Fatalf("removed member resubscribing: %#x", rc[0])
	}
	if rc := bob.Pub(t, topic, "still here?"); rc != 0x87 {
		t.Fatalf("removed member publishing: %#x", rc)
	}
}

// TestAddedMemberIsTold: a user added to a group learns it in its own inbox.
func TestAddedMemberIsTold(t *testing.T) { forEachStore(t, testAddedMemberIsTold) }

func testAddedMemberIsTold(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	carol := n.MustV5("carol", ct, "carol", brokertest.V5Options{})
	carol.Sub(t, "u/carol", 1)
	g := createGroup(t, n, at, "Trip", "bob")
	e := bob.In.WaitN(t, 1, protocol.TypeMemberAdded)[0].Entry(t)
	if e["for"] != "g/"+g.ID || e["name"] != "Trip" || e["by"] != "alice" || e["user"] != "bob" || e["inbox"] != "u/bob" {
		t.Fatalf("bob's notice = %v", e)
	}
	n.HTTPDo("POST", "/v1/groups/"+g.ID+"/members", at, map[string]string{"user": "carol"}, nil)
	if e := carol.In.WaitN(t, 1, protocol.TypeMemberAdded)[0].Entry(t); e["for"] != "g/"+g.ID {
		t.Fatalf("carol's notice = %v", e)
	}
	n.HTTPDo("DELETE", "/v1/groups/"+g.ID+"/members/carol", at, nil, nil)
	if e := carol.In.WaitN(t, 1, protocol.TypeMemberRemoved)[0].Entry(t); e["for"] != "g/"+g.ID || e["by"] != "alice" {
		t.Fatalf("carol's removal notice = %v", e)
	}
}

// TestGroupV3: MQTT 3.1.1 members send and receive group messages; a
// non-member gets an error entry.
func TestGroupV3(t *testing.T) { forEachStore(t, testGroupV3) }

func testGroupV3(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	g := createGroup(t, n, at, "Trip", "bob")
	topic := "g/" + g.ID
	bob := n.MustV3("bob", bt, "bob", true)
	if rc := bob.Sub(t, topic, 1); rc != 1 {
		t.Fatalf("v3 member subscribing: %#x", rc)
	}
	alice := n.MustV3("alice", at, "alice", true)
	if err := alice.Pub(t, topic, `{"cid":"x","body":{"text":"hi group"}}`); err != nil {
		t.Fatal(err)
	}
	if e := bob.In.WaitN(t, 1, protocol.TypeMsg)[0].Entry(t); e["inbox"] != topic || e["from"] != "alice" || e["seq"] != 2.0 {
		t.Fatalf("v3 member received %v", e)
	}
	carol := n.MustV3("carol", ct, "carol", true)
	carol.Sub(t, "u/carol", 1)
	if rc := carol.Sub(t, topic, 1); rc != 0x80 {
		t.Fatalf("v3 non-member subscribing: %#x, want 0x80", rc)
	}
	if err := carol.Pub(t, topic, `{"cid":"y","body":{}}`); err != nil {
		t.Fatal(err)
	}
	if e := carol.In.WaitN(t, 1, protocol.TypeError)[0].Entry(t); e["code"] != 135.0 || e["cid"] != "y" {
		t.Fatalf("v3 non-member's error entry = %v", e)
	}
}
