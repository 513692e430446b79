package broker_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/groups"
	"github.com/parleychat/parley/protocol"
)

// historyGroup is a group as the API shows it, with its history.
type historyGroup struct {
	groupJSON
	History string
}

type historyPage struct {
	Entries []map[string]any
	More    bool
}

// seqs returns the seqs of the page's entries.
func (p historyPage) seqs() []int64 {
	var out []int64
	for _, e := range p.Entries {
		out = append(out, int64(e["seq"].(float64)))
	}
	return out
}

// readGroup reads a page of a group's inbox as the token's user, with the
// query's paging (after=…, before=…, limit=…).
func readGroup(t *testing.T, n *brokertest.Node, token, id, query string) historyPage {
	t.Helper()
	var p historyPage
	if code := n.HTTPDo("GET", "/v1/messages?inbox=g/"+id+"&"+query, token, nil, &p); code != 200 {
		t.Fatalf("GET /v1/messages?inbox=g/%s&%s: status %d", id, query, code)
	}
	return p
}

// postGroup publishes texts to a group as c, each stored (PUBACK 0).
func postGroup(t *testing.T, c *brokertest.V5, id string, texts ...string) {
	t.Helper()
	for _, text := range texts {
		if rc := c.Pub(t, "g/"+id, fmt.Sprintf(`{"body":{"text":%q}}`, text)); rc != 0 {
			t.Fatalf("publish %q: PUBACK %#x", text, rc)
		}
	}
}

// TestGroupHistoryFromJoin: a member added to a group reads it from its
// join (its own member_added entry) on, paging forward and back, in its chat
// list and live over MQTT; a 'full' group shows it everything; only the
// owner and admins change the history, and the change is an entry.
func TestGroupHistoryFromJoin(t *testing.T) { forEachStore(t, testGroupHistoryFromJoin) }

func testGroupHistoryFromJoin(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct, dt := n.User("alice"), n.User("bob"), n.User("carol"), n.User("dave")
	var g historyGroup
	if code := n.HTTPDo("POST", "/v1/groups", at, map[string]any{"name": "Trip", "members": []string{"bob"}}, &g); code != 201 || g.History != "join" {
		t.Fatalf("create: %d %+v, want history join by default", code, g)
	}
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Sub(t, "u/alice", 1)
	postGroup(t, alice, g.ID, "one", "two", "three") // seqs 2..4
	if code := n.HTTPDo("POST", "/v1/groups/"+g.ID+"/members", at, map[string]string{"user": "carol"}, nil); code != 200 {
		t.Fatalf("add carol: %d", code)
	}
	// carol's device subscribes after her join, and gets what follows.
	carol := n.MustV5("carol", ct, "carol/phone", persistent)
	carol.Sub(t, "g/"+g.ID, 1)
	postGroup(t, alice, g.ID, "four", "five") // seqs 6, 7; carol's member_added is 5

	// Paging forward: from her join, whatever after she gives.
	for _, q := range []string{"after=0", "after=3", ""} {
		if p := readGroup(t, n, ct, g.ID, q); !slices.Equal(p.seqs(), []int64{5, 6, 7}) || p.More {
			t.Fatalf("carol's page %q: seqs %v more %v, want 5..7 and no more", q, p.seqs(), p.More)
		}
	}
	if p := readGroup(t, n, ct, g.ID, "after=0&limit=2"); !slices.Equal(p.seqs(), []int64{5, 6}) || !p.More {
		t.Fatalf("carol's first page of 2: %v more %v", p.seqs(), p.More)
	}
	if first := readGroup(t, n, ct, g.ID, "after=0").Entries[0]; first["type"] != protocol.TypeMemberAdded || first["user"] != "carol" {
		t.Fatalf("carol's first entry = %v, want her own member_added", first)
	}
	// Paging back: "more" ends at her join.
	if p := readGroup(t, n, ct, g.ID, "limit=2"); !slices.Equal(p.seqs(), []int64{6, 7}) || !p.More {
		t.Fatalf("carol's newest page of 2: %v more %v, want 6, 7 and more", p.seqs(), p.More)
	}
	if p := readGroup(t, n, ct, g.ID, "before=6&limit=2"); !slices.Equal(p.seqs(), []int64{5}) || p.More {
		t.Fatalf("carol's page before 6: %v more %v, want 5 and no more", p.seqs(), p.More)
	}
	if p := readGroup(t, n, ct, g.ID, "before=5"); len(p.Entries) != 0 || p.More {
		t.Fatalf("carol's page before her join: %v more %v, want nothing", p.seqs(), p.More)
	}
	// bob, a founder, reads everything.
	if p := readGroup(t, n, bt, g.ID, "after=0"); !slices.Equal(p.seqs(), []int64{1, 2, 3, 4, 5, 6, 7}) {
		t.Fatalf("bob reads %v, want 1..7", p.seqs())
	}
	// Her chat list counts only what came after her join.
	var chats struct {
		Conversations []struct {
			Group  string
			Unread int
			Last   map[string]any
		}
	}
	n.HTTPDo("GET", "/v1/me/conversations", ct, nil, &chats)
	if len(chats.Conversations) != 1 || chats.Conversations[0].Unread != 2 || chats.Conversations[0].Last["seq"] != 7.0 {
		t.Fatalf("carol's conversations = %+v, want the group with 2 unread, last 7", chats.Conversations)
	}
	// Live, her device got what followed her join, nothing from before.
	got := carol.In.WaitN(t, 2, protocol.TypeMsg)
	for _, m := range carol.In.All() {
		if h := m.Header(t); h.Inbox == "g/"+g.ID && h.Seq < 5 {
			t.Fatalf("carol's device got seq %d, from before her join", h.Seq)
		}
	}
	if h := got[0].Header(t); h.Seq != 6 {
		t.Fatalf("carol's first message live: seq %d, want 6", h.Seq)
	}
	// Marking everything read, she tells alice she read what came after
	// her join only.
	if rc := carol.Pub(t, "g/"+g.ID, `{"type":"read","seq":7}`); rc >= 0x80 {
		t.Fatalf("read marker: %#x", rc)
	}
	var receipt map[string]any
	alice.In.WaitFor(t, 10*time.Second, "a read receipt", func(ms []brokertest.Msg) bool {
		for _, m := range ms {
			if e := m.Entry(t); e["type"] == protocol.TypeReceipt && e["status"] == "read" {
				receipt = e
				return true
			}
		}
		return false
	})
	if ids, _ := receipt["ids"].([]any); len(ids) != 2 {
		t.Fatalf("alice's read receipt = %v, want carol's read of the 2 messages after her join", receipt)
	}

	// Only the owner and admins set the history; renaming stays anyone's.
	if code := n.HTTPDo("PATCH", "/v1/groups/"+g.ID, bt, map[string]string{"history": "full"}, nil); code != 403 {
		t.Fatalf("a member setting the history: %d, want 403", code)
	}
	if code := n.HTTPDo("PATCH", "/v1/groups/"+g.ID, bt, map[string]string{"name": "Road trip", "history": "full"}, nil); code != 403 {
		t.Fatalf("a member renaming and setting the history: %d, want 403", code)
	}
	var same historyGroup
	if n.HTTPDo("GET", "/v1/groups/"+g.ID, bt, nil, &same); same.Name != "Trip" || same.History != "join" {
		t.Fatalf("after a refused change: %+v, want it unchanged", same)
	}
	if code := n.HTTPDo("PATCH", "/v1/groups/"+g.ID, bt, map[string]string{"name": "Road trip"}, nil); code != 200 {
		t.Fatalf("a member renaming: %d", code)
	}
	if code := n.HTTPDo("PATCH", "/v1/groups/"+g.ID, at, map[string]string{"history": "all"}, nil); code != 400 {
		t.Fatalf("an unknown history: %d, want 400", code)
	}
	if code := n.HTTPDo("PATCH", "/v1/groups/"+g.ID, at, map[string]string{}, nil); code != 400 {
		t.Fatalf("a PATCH changing nothing: %d, want 400", code)
	}
	var full historyGroup
	if code := n.HTTPDo("PATCH", "/v1/groups/"+g.ID, at, map[string]string{"history": "full"}, &full); code != 200 || full.History != "full" {
		t.Fatalf("the owner setting full history: %d %+v", code, full)
	}
	e := carol.In.WaitN(t, 1, protocol.TypeHistoryChanged)[0].Entry(t)
	if e["history"] != "full" || e["by"] != "alice" || e["seq"] != 9.0 {
		t.Fatalf("history_changed entry = %v", e)
	}
	if p := readGroup(t, n, ct, g.ID, "after=0"); len(p.Entries) != 9 || p.Entries[0]["type"] != protocol.TypeGroupCreated {
		t.Fatalf("carol in a full group reads %v, want everything", p.seqs())
	}
	// A group created full shows a member added later everything.
	var f historyGroup
	if code := n.HTTPDo("POST", "/v1/groups", at, map[string]any{"name": "Open", "history": "full"}, &f); code != 201 || f.History != "full" {
		t.Fatalf("create full: %d %+v", code, f)
	}
	postGroup(t, alice, f.ID, "early")
	n.HTTPDo("POST", "/v1/groups/"+f.ID+"/members", at, map[string]string{"user": "dave"}, nil)
	if p := readGroup(t, n, dt, f.ID, "limit=100"); !slices.Equal(p.seqs(), []int64{1, 2, 3}) {
		t.Fatalf("dave in a group created full reads %v, want 1..3", p.seqs())
	}
	if code := n.HTTPDo("POST", "/v1/groups", at, map[string]any{"name": "X", "history": "some"}, nil); code != 400 {
		t.Fatalf("create with an unknown history: %d, want 400", code)
	}
}

// TestGroupHistoryReadded: a former member added back does not get, on a
// device that kept its cursor from before, what the group said while it
// was out: its catch-up starts at its return. In a 'full' group it does.
func TestGroupHistoryReadded(t *testing.T) {
	for _, history := range []string{"join", "full"} {
		t.Run(history, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, o brokertest.Options) { testGroupHistoryReadded(t, o, history) })
		})
	}
}

func testGroupHistoryReadded(t *testing.T, o brokertest.Options, history string) {
	n := brokertest.Start(t, o)
	at, ct := n.User("alice"), n.User("carol")
	var g historyGroup
	if code := n.HTTPDo("POST", "/v1/groups", at, map[string]any{"name": "Trip", "members": []string{"carol"}, "history": history}, &g); code != 201 {
		t.Fatalf("create: %d", code)
	}
	topic := "g/" + g.ID
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	carol := n.MustV5("carol", ct, "carol/phone", persistent)
	carol.Sub(t, topic, 1)
	postGroup(t, alice, g.ID, "before") // 2
	carol.In.WaitN(t, 1, protocol.TypeMsg)
	n.WaitCursor(t, "carol/phone", topic, 2)
	carol.Close()
	n.WaitGone(t, "carol/phone")
	// Removed at 3; 4 and 5 while she is out; added back at 6; 7 after.
	if code := n.HTTPDo("DELETE", "/v1/groups/"+g.ID+"/members/carol", at, nil, nil); code != 204 {
		t.Fatalf("remove carol: %d", code)
	}
	postGroup(t, alice, g.ID, "while out", "still out")
	if code := n.HTTPDo("POST", "/v1/groups/"+g.ID+"/members", at, map[string]string{"user": "carol"}, nil); code != 200 {
		t.Fatalf("add carol back: %d", code)
	}
	postGroup(t, alice, g.ID, "back")

	carol = n.MustV5("carol", ct, "carol/phone", persistent)
	if rc := carol.Sub(t, topic, 1); rc[0] != 1 {
		t.Fatalf("carol subscribing again: %#x", rc[0])
	}
	all := carol.In.WaitFor(t, 10*time.Second, `"back"`, func(ms []brokertest.Msg) bool {
		for _, m := range ms {
			if m.Header(t).Seq == 7 {
				return true
			}
		}
		return false
	})
	var seqs []int64
	for _, m := range all {
		if h := m.Header(t); h.Inbox == topic {
			seqs = append(seqs, h.Seq)
		}
	}
	want := []int64{6, 7}
	if history == "full" {
		want = []int64{3, 4, 5, 6, 7}
	}
	if !slices.Equal(seqs, want) {
		t.Fatalf("carol's device caught up on %v, want %v", seqs, want)
	}
	// Over HTTP too, she reads from her return.
	wantRead := []int64{6, 7}
	if history == "full" {
		wantRead = []int64{1, 2, 3, 4, 5, 6, 7}
	}
	if p := readGroup(t, n, ct, g.ID, "after=0"); !slices.Equal(p.seqs(), wantRead) {
		t.Fatalf("carol reads %v, want %v", p.seqs(), wantRead)
	}
	// Her cursor goes on from her return: a reconnect repeats nothing.
	n.WaitCursor(t, "carol/phone", topic, 7)
}

// TestGroupRateLimits: with small bursts, a user's create past its burst is
// refused with 429 and Retry-After and creates nothing; the members listed
// at creation count as adds; another user has its own allowance.
func TestGroupRateLimits(t *testing.T) { forEachStore(t, testGroupRateLimits) }

func testGroupRateLimits(t *testing.T, o brokertest.Options) {
	o.Config.GroupLimits = groups.Limits{CreateRate: 1, CreateBurst: 3, AddRate: 1, AddBurst: 5}
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	for _, u := range []string{"carol", "dave", "erin", "frank", "gina", "hal"} {
		n.User(u)
	}
	create := func(token string, members ...string) (int, http.Header, map[string]any) {
		t.Helper()
		return rawHTTP(t, n, "POST", "/v1/groups", token, map[string]any{"name": "G", "members": members})
	}
	var ids []string
	for i, ms := range [][]string{{"bob"}, {"bob", "carol"}, {}} { // 3 creates, 3 adds
		code, _, body := create(at, ms...)
		if code != 201 {
			t.Fatalf("create %d: %d %v", i+1, code, body)
		}
		ids = append(ids, body["id"].(string))
	}
	code, h, body := create(at)
	retry, _ := strconv.Atoi(h.Get("Retry-After"))
	if code != 429 || retry < 1 || body["error"] == nil {
		t.Fatalf("create past the burst: %d, Retry-After %q, %v; want 429 with Retry-After and an error", code, h.Get("Retry-After"), body)
	}
	t.Logf("refused: %v, Retry-After %s", body["error"], h.Get("Retry-After"))
	var mine struct{ Groups []groupJSON }
	if n.HTTPDo("GET", "/v1/me/groups", at, nil, &mine); len(mine.Groups) != 3 {
		t.Fatalf("alice has %d groups, want the 3 allowed", len(mine.Groups))
	}
	// 3 of 5 adds are spent: 2 more, then 429.
	for i, u := range []string{"dave", "erin", "frank"} {
		code, h, body := rawHTTP(t, n, "POST", "/v1/groups/"+ids[2]+"/members", at, map[string]string{"user": u})
		want := 200
		if i == 2 {
			want = 429
		}
		if code != want || (want == 429 && h.Get("Retry-After") == "") {
			t.Fatalf("add %s: %d %v (Retry-After %q), want %d", u, code, body, h.Get("Retry-After"), want)
		}
	}
	var g groupJSON
	if n.HTTPDo("GET", "/v1/groups/"+ids[2], at, nil, &g); !slices.Equal(g.Members, []string{"alice", "dave", "erin"}) {
		t.Fatalf("members %v, want alice, dave, erin", g.Members)
	}
	// bob has his own allowance; more members than the add burst at once
	// is never allowed (422).
	if code, _, body := create(bt, "carol", "dave", "erin", "frank", "gina"); code != 201 {
		t.Fatalf("bob's create with 5 members: %d %v", code, body)
	}
	if code, _, body := create(bt, "carol", "dave", "erin", "frank", "gina", "hal"); code != 422 {
		t.Fatalf("bob's create with 6 members, more than the add burst: %d %v, want 422", code, body)
	}
}

// rawHTTP sends a JSON request and returns the status, the headers and the
// decoded JSON object answered.
func rawHTTP(t *testing.T, n *brokertest.Node, method, path, token string, body any) (int, http.Header, map[string]any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, n.HTTP+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, raw, err)
	}
	return resp.StatusCode, resp.Header, out
}
