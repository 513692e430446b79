package broker_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pgx's pool health checker and paho's lingering readers end shortly
		// after Close; they are not Parley's goroutines.
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreAnyFunction("github.com/eclipse/paho.mqtt.golang.(*client).startCommsWorkers"),
		goleak.IgnoreAnyFunction("github.com/eclipse/paho.golang/paho.(*Client).Connect.func3"),
	)
}

var persistent = brokertest.V5Options{SessionExpiry: 3600}

// msgs returns the entries of type msg among ms.
func msgs(t *testing.T, ms []brokertest.Msg) []protocol.Header {
	var out []protocol.Header
	for _, m := range ms {
		if h := m.Header(t); h.Type == protocol.TypeMsg {
			out = append(out, h)
		}
	}
	return out
}

func TestDirectMessage(t *testing.T) { forEachStore(t, testDirectMessage) }

func testDirectMessage(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	bob := n.MustV5("bob", bt, "bob/phone", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	alice2 := n.MustV5("alice", at, "alice/laptop", brokertest.V5Options{})
	alice2.Sub(t, "u/alice", 1)
	alice := n.MustV5("alice", at, "alice/phone", brokertest.V5Options{})

	before := time.Now().UnixMilli()
	// A client cannot spoof the fields the server stamps.
	if rc := alice.Pub(t, "u/bob", `{"cid":"c-1","body":{"text":"hello"},"from":"mallory","seq":99,"id":"x"}`); rc != 0 {
		t.Fatalf("PUBACK reason %#x, want 0", rc)
	}
	got := bob.In.WaitN(t, 1, protocol.TypeMsg)[0]
	if got.Topic != "u/bob" || got.QoS != 1 {
		t.Fatalf("delivered on %s at QoS %d", got.Topic, got.QoS)
	}
	e := got.Entry(t)
	if e["from"] != "alice" || e["to"] != "bob" || e["inbox"] != "u/bob" || e["seq"] != 1.0 || e["type"] != "msg" ||
		e["cid"] != "c-1" || e["id"] == "x" || e["id"] == "" {
		t.Fatalf("entry = %v", e)
	}
	if ts := int64(e["ts"].(float64)); ts < before || ts > time.Now().UnixMilli() {
		t.Fatalf("ts %d is not the server's time", ts)
	}
	if body, _ := json.Marshal(e["body"]); string(body) != `{"text":"hello"}` {
		t.Fatalf("body = %s", body)
	}
	// The sender's other device gets the sender's copy, numbered in alice's inbox.
	cp := alice2.In.WaitN(t, 1, protocol.TypeMsg)[0].Entry(t)
	if cp["inbox"] != "u/alice" || cp["seq"] != 1.0 || cp["id"] != e["id"] || cp["from"] != "alice" || cp["to"] != "bob" {
		t.Fatalf("sender's copy = %v", cp)
	}
	// Plain text is a message too (mosquitto_pub -m hello).
	alice.Pub(t, "u/bob", "just text")
	second := bob.In.WaitN(t, 2, protocol.TypeMsg)[1].Entry(t)
	if second["seq"] != 2.0 || second["body"].(map[string]any)["text"] != "just text" {
		t.Fatalf("text message = %v", second)
	}
}

func TestIdempotentRetry(t *testing.T) { forEachStore(t, testIdempotentRetry) }

func testIdempotentRetry(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	for i := 0; i < 3; i++ {
		if rc := alice.Pub(t, "u/bob", `{"cid":"same","body":{"text":"once"}}`); rc != 0 {
			t.Fatalf("attempt %d: PUBACK %#x", i, rc)
		}
	}
	alice.Pub(t, "u/bob", `{"cid":"other","body":{"text":"next"}}`)
	got := msgs(t, bob.In.WaitN(t, 2, protocol.TypeMsg))
	if len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 2 {
		t.Fatalf("bob received %+v, want seqs 1 and 2 only", got)
	}
	es, err := n.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/bob", 0, 10)
	if err != nil || len(es) != 2 {
		t.Fatalf("stored %d entries (%v), want 2", len(es), err)
	}
}

func TestIdempotencyPerRecipient(t *testing.T) { forEachStore(t, testIdempotencyPerRecipient) }

// testIdempotencyPerRecipient: a cid is the sender's id for a message to
// one inbox, not for every message. alice sends cid c1 to bob and then c1
// to carol: each receives their own message. Her retry of c1 to bob is
// acknowledged and not delivered again.
func testIdempotencyPerRecipient(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	carol := n.MustV5("carol", ct, "carol", brokertest.V5Options{})
	carol.Sub(t, "u/carol", 1)
	laptop := n.MustV5("alice", at, "alice/laptop", brokertest.V5Options{})
	laptop.Sub(t, "u/alice", 1)
	alice := n.MustV5("alice", at, "alice/phone", brokertest.V5Options{})

	for _, p := range []struct{ topic, payload string }{
		{"u/bob", `{"cid":"c1","body":{"text":"to bob"}}`},
		{"u/carol", `{"cid":"c1","body":{"text":"to carol"}}`},
		{"u/bob", `{"cid":"c1","body":{"text":"to bob"}}`}, // a retry
		{"u/bob", `{"cid":"c2","body":{"text":"next"}}`},
	} {
		if rc := alice.Pub(t, p.topic, p.payload); rc != 0 {
			t.Fatalf("publish %s to %s: PUBACK %#x", p.payload, p.topic, rc)
		}
	}
	// What a device received: "to cid seq text" per message.
	received := func(ms []brokertest.Msg) []string {
		var out []string
		for _, m := range ms {
			e := m.Entry(t)
			body, _ := e["body"].(map[string]any)
			out = append(out, fmt.Sprintf("%v %v %v %v", e["to"], e["cid"], e["seq"], body["text"]))
		}
		return out
	}
	check := func(who string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("%s received %q, want %q", who, got, want)
		}
	}
	// The retry, delivered again, would come before c2.
	check("bob", received(bob.In.WaitN(t, 2, protocol.TypeMsg)), []string{"bob c1 1 to bob", "bob c2 2 next"})
	check("carol", received(carol.In.WaitN(t, 1, protocol.TypeMsg)), []string{"carol c1 1 to carol"})
	// alice's other device gets her copies, each once.
	check("alice's laptop", received(laptop.In.WaitN(t, 3, protocol.TypeMsg)),
		[]string{"bob c1 1 to bob", "carol c1 2 to carol", "bob c2 3 next"})
	for inbox, want := range map[string]int{"u/bob": 2, "u/carol": 1, "u/alice": 3} {
		es, err := n.Store.Read(brokertest.Ctx(t, 5*time.Second), inbox, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		stored := 0
		for _, e := range es {
			if e.Type == protocol.TypeMsg {
				stored++
			}
		}
		if stored != want {
			t.Errorf("%s holds %d messages, want %d", inbox, stored, want)
		}
	}
}

func TestDeliveredReceipt(t *testing.T) { forEachStore(t, testDeliveredReceipt) }

func testDeliveredReceipt(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Sub(t, "u/alice", 1)
	// Two devices of bob acknowledge: the receipt is sent once.
	phone := n.MustV5("bob", bt, "bob/phone", brokertest.V5Options{})
	phone.Sub(t, "u/bob", 1)
	laptop := n.MustV5("bob", bt, "bob/laptop", brokertest.V5Options{})
	laptop.Sub(t, "u/bob", 1)
	alice.Pub(t, "u/bob", `{"cid":"a","body":{"text":"1"}}`)
	alice.Pub(t, "u/bob", `{"cid":"b","body":{"text":"2"}}`)
	phone.In.WaitN(t, 2, protocol.TypeMsg)
	laptop.In.WaitN(t, 2, protocol.TypeMsg)

	var ids []string
	for _, m := range msgs(t, alice.In.WaitN(t, 2, protocol.TypeMsg)) { // her own copies
		ids = append(ids, m.ID)
	}
	var receipted []string
	alice.In.WaitFor(t, 10*time.Second, "receipts for both messages", func(ms []brokertest.Msg) bool {
		receipted = receipted[:0]
		for _, m := range ms {
			e := m.Entry(t)
			if e["type"] != "receipt" {
				continue
			}
			if e["status"] != "delivered" || e["by"] != "bob" || e["from"] != "bob" || e["inbox"] != "u/alice" {
				t.Fatalf("receipt = %v", e)
			}
			for _, id := range e["ids"].([]any) {
				receipted = append(receipted, id.(string))
			}
		}
		return len(receipted) >= 2
	})
	// A third message, acknowledged by both devices after the first two:
	// once its receipt is in, a repeated receipt for the first two would
	// have been gathered with it or before it.
	alice.Pub(t, "u/bob", `{"cid":"c","body":{"text":"3"}}`)
	ids = append(ids, msgs(t, alice.In.WaitN(t, 3, protocol.TypeMsg))[2].ID)
	phone.In.WaitN(t, 3, protocol.TypeMsg)
	laptop.In.WaitN(t, 3, protocol.TypeMsg)
	alice.In.WaitFor(t, 10*time.Second, "the third message's receipt", func(ms []brokertest.Msg) bool {
		for _, m := range ms {
			if e := m.Entry(t); e["type"] == "receipt" && slices.Contains(e["ids"].([]any), any(ids[2])) {
				return true
			}
		}
		return false
	})
	receipted = receipted[:0]
	for _, m := range alice.In.All() {
		if e := m.Entry(t); e["type"] == "receipt" {
			for _, id := range e["ids"].([]any) {
				receipted = append(receipted, id.(string))
			}
		}
	}
	slices.Sort(receipted)
	slices.Sort(ids)
	if !slices.Equal(receipted, ids) {
		t.Fatalf("receipted %v, want each of %v once", receipted, ids)
	}
}

func TestCatchupAfterOffline(t *testing.T) { forEachStore(t, testCatchupAfterOffline) }

func testCatchupAfterOffline(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})

	bob := n.MustV5("bob", bt, "bob/phone", persistent)
	bob.Sub(t, "u/bob", 1)
	alice.Pub(t, "u/bob", "first")
	bob.In.WaitN(t, 1, protocol.TypeMsg)
	// The phone's PUBACK must have reached the server before it leaves, or
	// catch-up rightly sends seq 1 again.
	n.WaitCursor(t, "bob/phone", "u/bob", 1)
	bob.Close()
	n.WaitGone(t, "bob/phone")

	for i := 2; i <= 6; i++ {
		if rc := alice.Pub(t, "u/bob", fmt.Sprintf("m%d", i)); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
	}
	// bob's phone comes back without subscribing again: its session has the subscription.
	bob = n.MustV5("bob", bt, "bob/phone", persistent)
	if !bob.Connack.SessionPresent {
		t.Fatal("session not present on reconnect")
	}
	alice.Pub(t, "u/bob", "m7") // live, after the backlog
	got := msgs(t, bob.In.WaitN(t, 6, protocol.TypeMsg))
	var seqs []int64
	for _, h := range got {
		seqs = append(seqs, h.Seq)
	}
	if !slices.Equal(seqs, []int64{2, 3, 4, 5, 6, 7}) {
		t.Fatalf("after reconnect bob received seqs %v, want 2..7 in order", seqs)
	}

	// A device that subscribes again (as a 3.1.1 client with a persistent
	// session must after a restart) also gets what it missed, in order.
	v3 := n.MustV3("bob", bt, "bob/v3", false)
	v3.Sub(t, "u/bob", 1)
	alice.Pub(t, "u/bob", "m8")
	v3.In.WaitN(t, 1, protocol.TypeMsg)
	n.WaitCursor(t, "bob/v3", "u/bob", 8)
	v3.Disconnect(100)
	n.WaitGone(t, "bob/v3")
	alice.Pub(t, "u/bob", "m9")
	alice.Pub(t, "u/bob", "m10")
	v3 = n.MustV3("bob", bt, "bob/v3", false)
	v3.Sub(t, "u/bob", 1)
	got = msgs(t, v3.In.WaitN(t, 2, protocol.TypeMsg))
	if got[0].Seq != 9 || got[1].Seq != 10 {
		t.Fatalf("v3 catch-up: %+v, want seqs 9, 10", got)
	}
}

func TestCatchupAfterRestart(t *testing.T) { forEachStore(t, testCatchupAfterRestart) }

func testCatchupAfterRestart(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	bob := n.MustV5("bob", bt, "bob/phone", persistent)
	bob.Sub(t, "u/bob", 1)
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Pub(t, "u/bob", "before")
	bob.In.WaitN(t, 1, protocol.TypeMsg)
	// The PUBACK of seq 1 must reach the server before the phone leaves;
	// otherwise sending seq 1 again after the restart is right.
	n.WaitCursor(t, "bob/phone", "u/bob", 1)
	bob.Close()
	n.WaitGone(t, "bob/phone")
	for i := 0; i < 3; i++ {
		alice.Pub(t, "u/bob", fmt.Sprintf("while away %d", i))
	}
	alice.Close()
	n.Stop()

	n2 := brokertest.Start(t, brokertest.Options{Store: o.Store, DBURL: n.DBURL})
	bob = n2.MustV5("bob", bt, "bob/phone", persistent)
	if bob.Connack.SessionPresent {
		t.Fatal("a restarted broker reported a session present")
	}
	bob.Sub(t, "u/bob", 1)
	got := msgs(t, bob.In.WaitN(t, 3, protocol.TypeMsg))
	if len(got) != 3 || got[0].Seq != 2 || got[2].Seq != 4 {
		t.Fatalf("after restart bob received %+v, want seqs 2, 3, 4", got)
	}
}

func TestHistoryAPI(t *testing.T) { forEachStore(t, testHistoryAPI) }

func testHistoryAPI(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	for i := 1; i <= 7; i++ {
		alice.Pub(t, "u/bob", fmt.Sprintf("m%d", i))
	}
	type page struct {
		Inbox   string
		Entries []map[string]any
		More    bool
	}
	seqs := func(p page) []int {
		var out []int
		for _, e := range p.Entries {
			out = append(out, int(e["seq"].(float64)))
		}
		return out
	}
	cases := map[string]struct {
		query string
		want  []int
		more  bool
	}{
		"after, first page":  {"inbox=u/bob&after=0&limit=3", []int{1, 2, 3}, true},
		"after, last page":   {"inbox=u/bob&after=5&limit=3", []int{6, 7}, false},
		"newest page":        {"inbox=u/bob&limit=3", []int{5, 6, 7}, true},
		"before":             {"inbox=u/bob&before=5&limit=3", []int{2, 3, 4}, true},
		"before, first page": {"inbox=u/bob&before=3&limit=3", []int{1, 2}, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var p page
			if code := n.HTTPDo("GET", "/v1/messages?"+c.query, bt, nil, &p); code != 200 {
				t.Fatalf("status %d", code)
			}
			if !slices.Equal(seqs(p), c.want) || p.More != c.more {
				t.Fatalf("seqs %v more %v, want %v more %v", seqs(p), p.More, c.want, c.more)
			}
		})
	}
	if code := n.HTTPDo("GET", "/v1/messages?inbox="+url.QueryEscape("u/bob"), at, nil, nil); code != 403 {
		t.Fatalf("alice reading bob's inbox: status %d, want 403", code)
	}
	if code := n.HTTPDo("GET", "/v1/messages?inbox=u/bob", "", nil, nil); code != 401 {
		t.Fatalf("no token: status %d, want 401", code)
	}
	if code := n.HTTPDo("GET", "/v1/messages?inbox=u/bob&after=x", bt, nil, nil); code != 400 {
		t.Fatalf("bad after: status %d, want 400", code)
	}
	// alice's own inbox holds her copies.
	var p page
	n.HTTPDo("GET", "/v1/messages?inbox=u/alice&after=0", at, nil, &p)
	if len(p.Entries) != 7 || p.Entries[0]["to"] != "bob" {
		t.Fatalf("alice's copies: %v", p.Entries)
	}
}

func TestAccounts(t *testing.T) { forEachStore(t, testAccounts) }

func testAccounts(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	n.User("alice")
	cases := map[string]struct {
		path string
		body map[string]string
		want int
	}{
		"taken id":       {"/v1/users", map[string]string{"id": "alice", "password": "password-9x"}, 409},
		"invalid id":     {"/v1/users", map[string]string{"id": "Alice!", "password": "password-9x"}, 400},
		"short password": {"/v1/users", map[string]string{"id": "carol", "password": "short"}, 400},
		"admin's id":     {"/v1/users", map[string]string{"id": brokertest.Admin, "password": "password-9x"}, 409},
		"login":          {"/v1/tokens", map[string]string{"id": "alice", "password": "password-alice"}, 200},
		"wrong password": {"/v1/tokens", map[string]string{"id": "alice", "password": "nope-nope"}, 401},
		"unknown user":   {"/v1/tokens", map[string]string{"id": "zed", "password": "password1"}, 401},
		"unknown field":  {"/v1/tokens", map[string]string{"id": "alice", "pass": "x"}, 400},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if code := n.HTTPDo("POST", c.path, "", c.body, nil); code != c.want {
				t.Fatalf("status %d, want %d", code, c.want)
			}
		})
	}
	var me map[string]any
	tok := n.Login("alice")
	if code := n.HTTPDo("GET", "/v1/me", tok, nil, &me); code != 200 || me["id"] != "alice" || me["name"] != "User alice" {
		t.Fatalf("GET /v1/me: %d %v", code, me)
	}
	if code := n.HTTPDo("GET", "/v1/me", "pt_not-a-real-token", nil, nil); code != 401 {
		t.Fatalf("bad token: %d, want 401", code)
	}
}

func TestConnectAndACL(t *testing.T) { forEachStore(t, testConnectAndACL) }

func testConnectAndACL(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")

	// Bad credentials and foreign client ids are refused with precise codes.
	v5cases := map[string]struct {
		user, secret, clientID string
		want                   byte
	}{
		"bad token":            {"bob", "pt_wrong-wrong-wrong", "bob", 0x86},
		"someone else's token": {"bob", at, "bob", 0x86},
		"alice's client id":    {"bob", bt, "alice/phone", 0x85},
		"prefix of a user id":  {"bob", bt, "bobby", 0x85},
		"admin, bad password":  {brokertest.Admin, "nope", "x", 0x86},
	}
	for name, c := range v5cases {
		t.Run("v5 "+name, func(t *testing.T) {
			cl, err := n.DialV5(c.user, c.secret, c.clientID, brokertest.V5Options{})
			if err == nil {
				t.Fatal("connected")
			}
			if cl.Connack == nil || cl.Connack.ReasonCode != c.want {
				t.Fatalf("CONNACK %+v, want reason %#x", cl.Connack, c.want)
			}
		})
	}
	for name, c := range map[string]struct {
		secret, clientID string
		want             string
	}{"bad token": {"pt_wrong-wrong-wrong", "bob", "bad user name or password"}, "client id": {bt, "alice", "identifier rejected"}} {
		t.Run("v3 "+name, func(t *testing.T) {
			_, err := n.DialV3("bob", c.secret, c.clientID, true)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), c.want) {
				t.Fatalf("v3 connect error %v, want %q", err, c.want)
			}
		})
	}

	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	for _, filter := range []string{"u/alice", "u/+", "#", "+/bob", "$SYS/#", "random/topic", "$share/g/u/bob"} {
		if rc := bob.Sub(t, filter, 1); rc[0] != 0x87 {
			t.Errorf("bob subscribing %s: reason %#x, want 0x87", filter, rc[0])
		}
	}
	if rc := bob.Sub(t, "u/bob", 1); rc[0] != 1 {
		t.Errorf("bob subscribing u/bob: reason %#x, want 1", rc[0])
	}
	v3 := n.MustV3("bob", bt, "bob/v3", true)
	if rc := v3.Sub(t, "u/alice", 1); rc != 0x80 {
		t.Errorf("v3 bob subscribing u/alice: %#x, want 0x80", rc)
	}

	// An administrator may use the whole broker, wildcards and $SYS included,
	// and sees what users send.
	admin := n.MustV5(brokertest.Admin, brokertest.AdminPassword, "debug-console", brokertest.V5Options{})
	for _, filter := range []string{"#", "$SYS/#"} {
		if rc := admin.Sub(t, filter, 1); rc[0] != 1 {
			t.Errorf("admin subscribing %s: %#x", filter, rc[0])
		}
	}
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Pub(t, "u/bob", "watched")
	admin.In.WaitFor(t, 5*time.Second, "the DM seen by the admin", func(ms []brokertest.Msg) bool {
		for _, m := range ms {
			if m.Topic == "u/bob" {
				return true
			}
		}
		return false
	})
	// Plain MQTT for admins: retained messages work.
	if rc := admin.Pub(t, "devices/thermostat", "21.5"); rc != 0 {
		t.Fatalf("admin publish to a plain topic: %#x", rc)
	}
}

func TestErrorsV5(t *testing.T) { forEachStore(t, testErrorsV5) }

func testErrorsV5(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, withConfig(o, brokertestConfig()))
	at := n.User("alice")
	n.User("bob")
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	big := `{"body":{"text":"` + strings.Repeat("x", 5000) + `"}}`
	cases := []struct {
		name, topic, payload string
		want                 byte
	}{
		{"plain topic", "random/topic", "x", 0x87},
		{"someone's presence", "p/bob", "x", 0x87},
		{"unknown user", "u/nobody", "x", 0x90},
		{"malformed inbox", "u/Bob!", "x", 0x90},
		{"too large", "u/bob", big, 0x95},
		{"body not an object", "u/bob", `{"body":"text"}`, 0x99},
		{"cid too long", "u/bob", `{"cid":"` + strings.Repeat("c", 65) + `","body":{}}`, 0x99},
		{"unknown type", "u/bob", `{"type":"bogus"}`, 0x99},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if rc := alice.Pub(t, c.topic, c.payload); rc != c.want {
				t.Fatalf("PUBACK %#x, want %#x", rc, c.want)
			}
		})
	}
	// Nothing refused was stored.
	if es, _ := n.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/bob", 0, 10); len(es) != 0 {
		t.Fatalf("refused publishes stored %d entries in u/bob", len(es))
	}
	t.Run("rate limited", func(t *testing.T) {
		cfg := brokertestConfig()
		cfg.Inbox.Rate, cfg.Inbox.Burst = 1, 3
		n := brokertest.Start(t, withConfig(o, cfg))
		at := n.User("alice")
		n.User("bob")
		alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
		var codes []byte
		for i := 0; i < 8; i++ {
			codes = append(codes, alice.Pub(t, "u/bob", "spam"))
		}
		if !slices.Contains(codes, 0x97) || codes[0] != 0 {
			t.Fatalf("PUBACK codes %x, want successes then 0x97", codes)
		}
	})
}

func TestErrorsV3(t *testing.T) { forEachStore(t, testErrorsV3) }

func testErrorsV3(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, withConfig(o, brokertestConfig()))
	at := n.User("alice")
	n.User("bob")
	alice := n.MustV3("alice", at, "alice", true)
	alice.Sub(t, "u/alice", 1)
	cases := []struct {
		topic, payload string
		code           float64
	}{
		{"random/topic", `{"cid":"c-1","body":{}}`, 0x87},
		{"u/nobody", `{"cid":"c-2","body":{}}`, 0x90},
		{"u/bob", `{"cid":"c-3","body":"text"}`, 0x99},
		{"u/bob", `{"cid":"c-4","body":{"text":"` + strings.Repeat("x", 5000) + `"}}`, 0x95},
	}
	for _, c := range cases {
		if err := alice.Pub(t, c.topic, c.payload); err != nil {
			t.Fatalf("publish to %s: %v (a 3.1.1 client gets a PUBACK and an error entry)", c.topic, err)
		}
	}
	errs := alice.In.WaitN(t, len(cases), protocol.TypeError)
	for i, c := range cases {
		e := errs[i].Entry(t)
		if e["code"] != c.code || e["inbox"] != "u/alice" || e["reason"] == "" || e["cid"] != fmt.Sprintf("c-%d", i+1) {
			t.Errorf("error entry %d = %v, want code %#x", i, e, int(c.code))
		}
	}
	if es, _ := n.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/bob", 0, 10); len(es) != 0 {
		t.Fatalf("refused publishes stored %d entries in u/bob", len(es))
	}
}

// TestStoreOutage: with Postgres cut off no publish is acknowledged as
// stored or delivered; the node stays up, reports not ready, and recovers.
func TestStoreOutage(t *testing.T) {
	base := brokertestDB(t)
	u, _ := url.Parse(base)
	proxy := brokertest.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	n := brokertest.Start(t, brokertest.Options{DBURL: u.String()})
	at, bt := n.User("alice"), n.User("bob")
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	v3 := n.MustV3("alice", at, "alice/v3", true)
	alice.Pub(t, "u/bob", "before")
	bob.In.WaitN(t, 1, protocol.TypeMsg)

	proxy.Cut()
	if rc := alice.Pub(t, "u/bob", "during"); rc != 0x80 {
		t.Fatalf("PUBACK during outage %#x, want 0x80", rc)
	}
	if err := v3.Pub(t, "u/bob", "during v3"); err == nil {
		t.Fatal("v3 publish during outage was acknowledged")
	}
	if v3.IsConnectionOpen() {
		t.Fatal("v3 client still connected after a publish that could not be stored")
	}
	if code := n.HTTPDo("GET", "/readyz", "", nil, nil); code != 503 {
		t.Fatalf("/readyz during outage: %d, want 503", code)
	}
	if code := n.HTTPDo("GET", "/healthz", "", nil, nil); code != 200 {
		t.Fatalf("/healthz during outage: %d, want 200", code)
	}

	proxy.Restore()
	deadline := time.Now().Add(15 * time.Second)
	for n.HTTPDo("GET", "/readyz", "", nil, nil) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("not ready again after the store came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rc := alice.Pub(t, "u/bob", "after"); rc != 0 {
		t.Fatalf("PUBACK after outage %#x", rc)
	}
	got := msgs(t, bob.In.WaitN(t, 2, protocol.TypeMsg))
	if len(got) != 2 || got[1].Seq != 2 {
		t.Fatalf("bob received %+v: want 'before' and 'after' (seq 1, 2) and nothing from the outage", got)
	}
}

func TestGaplessUnderConcurrentSenders(t *testing.T) {
	forEachStore(t, testGaplessUnderConcurrentSenders)
}

func testGaplessUnderConcurrentSenders(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	bt := n.User("bob")
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	const senders, each = 50, 10
	var wg sync.WaitGroup
	for i := 0; i < senders; i++ {
		id := fmt.Sprintf("s%02d", i)
		tok := n.User(id)
		c := n.MustV5(id, tok, id, brokertest.V5Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				if rc := c.Pub(t, "u/bob", fmt.Sprintf(`{"cid":"%d","body":{}}`, j)); rc != 0 {
					t.Errorf("PUBACK %#x", rc)
				}
			}
		}()
	}
	wg.Wait()
	got := msgs(t, bob.In.WaitN(t, senders*each, protocol.TypeMsg))
	seen := map[int64]bool{}
	for _, h := range got {
		seen[h.Seq] = true
	}
	for s := int64(1); s <= senders*each; s++ {
		if !seen[s] {
			t.Fatalf("seq %d missing among %d deliveries", s, len(got))
		}
	}
	if len(got) != senders*each {
		t.Fatalf("%d deliveries, want %d", len(got), senders*each)
	}
}

func TestWebSocket(t *testing.T) { forEachStore(t, testWebSocket) }

func testWebSocket(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	bob := n.MustWS(t, "bob", bt, "bob/web")
	bob.Sub(t, "u/bob", 1)
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Pub(t, "u/bob", "over websocket")
	if e := bob.In.WaitN(t, 1, protocol.TypeMsg)[0].Entry(t); e["body"].(map[string]any)["text"] != "over websocket" {
		t.Fatalf("entry = %v", e)
	}
	if rc := bob.Pub(t, "u/alice", "back"); rc != 0 {
		t.Fatalf("PUBACK over websocket %#x", rc)
	}
}

func TestSlowConsumerIsDisconnectedAndCatchesUp(t *testing.T) {
	forEachStore(t, testSlowConsumerIsDisconnectedAndCatchesUp)
}

func testSlowConsumerIsDisconnectedAndCatchesUp(t *testing.T, o brokertest.Options) {
	cfg := brokertestConfig()
	cfg.Inbox.Rate = -1
	cfg.Inbox.MaxInflight = 8
	// On a busy machine alice's messages can reach bob's subscription while
	// its catch-up still runs: a full catch-up window that sees no
	// acknowledgement cuts him off too.
	cfg.Inbox.CatchupAckWait = 300 * time.Millisecond
	n := brokertest.Start(t, withConfig(o, cfg))
	at, bt := n.User("alice"), n.User("bob")
	// bob never acknowledges: after 8 unacknowledged deliveries he is cut off.
	bob := n.MustV5("bob", bt, "bob/phone", brokertest.V5Options{SessionExpiry: 3600, ManualAck: true})
	bob.Sub(t, "u/bob", 1)
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	for i := 1; i <= 20; i++ {
		if rc := alice.Pub(t, "u/bob", fmt.Sprintf("m%d", i)); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
	}
	select {
	case <-bob.Done():
	case <-time.After(brokertest.Patience(10 * time.Second)):
		t.Fatal("slow consumer not disconnected")
	}
	bob = n.MustV5("bob", bt, "bob/phone", persistent)
	got := msgs(t, bob.In.WaitN(t, 20, protocol.TypeMsg))
	for i, h := range got[:20] {
		if h.Seq != int64(i+1) {
			t.Fatalf("catch-up delivery %d has seq %d", i, h.Seq)
		}
	}
}
