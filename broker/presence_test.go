package broker_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/protocol"
)

// presences returns the presence states received on topic, in order. A
// state repeated (the server may send the current one again after a
// subscription raced a change) counts once.
func presences(t *testing.T, ms []brokertest.Msg, topic string) []protocol.Presence {
	t.Helper()
	var out []protocol.Presence
	for _, m := range ms {
		if m.Topic != topic {
			continue
		}
		var p protocol.Presence
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			t.Fatalf("presence on %s is not the server's JSON: %q", topic, m.Payload)
		}
		if len(out) > 0 && out[len(out)-1] == p {
			continue
		}
		out = append(out, p)
	}
	return out
}

// waitPresence waits for the n-th state on topic and returns it.
func waitPresence(t *testing.T, in *brokertest.Inbox, topic string, n int) protocol.Presence {
	t.Helper()
	var ps []protocol.Presence
	in.WaitFor(t, 10*time.Second, "presence state "+topic, func(ms []brokertest.Msg) bool {
		ps = presences(t, ms, topic)
		return len(ps) >= n
	})
	return ps[n-1]
}

func statuses(ps []protocol.Presence) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Status)
	}
	return out
}

// waitConnections waits until the node has want MQTT connections. mochi
// counts a connection down after its OnDisconnect hooks ran, so once a
// departure is counted, whatever it published has been handed to the
// subscribers' queues.
func waitConnections(t *testing.T, n *brokertest.Node, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mfs, err := n.Srv.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := -1.0
		for _, mf := range mfs {
			if mf.GetName() == "parley_mqtt_connections" {
				got = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		if got == float64(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v MQTT connections, want %d", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// barrier sends c a note through its own inbox (c must be subscribed to
// u/{user}) and waits for it: a connection delivers in order, so everything
// handed to c's queue before has arrived.
func barrier(t *testing.T, c *brokertest.V5, user string) {
	t.Helper()
	note := "barrier " + time.Now().Format(time.RFC3339Nano)
	if rc := c.Pub(t, protocol.UserInbox(user), note); rc != 0 {
		t.Fatalf("barrier: PUBACK %#x", rc)
	}
	c.In.WaitFor(t, 10*time.Second, "the barrier note", func(ms []brokertest.Msg) bool {
		return slices.ContainsFunc(ms, func(m brokertest.Msg) bool { return bytes.Contains(m.Payload, []byte(note)) })
	})
}

// dialSilent connects an MQTT 3.1.1 client byte by byte and then sends
// nothing, not even PINGREQ, like a device whose network went away without
// closing the connection: the broker gives up on it when its keep-alive
// (1.5 × keepAlive, rounded down to seconds) runs out. willTopic, if set,
// gets a retained will.
func dialSilent(t *testing.T, n *brokertest.Node, user, secret, clientID string, keepAlive uint16, willTopic string) net.Conn {
	t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: keepAlive,
			ClientIdentifier: clientID, UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(secret)}}
	if willTopic != "" {
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, willTopic, []byte("bye")
		pk.Connect.WillRetain, pk.Connect.WillQos = true, 1
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", n.MQTT, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK % x, %v; want 20 02 00 00", ack, err)
	}
	return conn
}

type presenceAnswer struct {
	Users []protocol.Presence `json:"users"`
}

func lookup(t *testing.T, n *brokertest.Node, token, users string) []protocol.Presence {
	t.Helper()
	var out presenceAnswer
	if code := n.HTTPDo("GET", "/v1/presence?users="+users, token, nil, &out); code != 200 {
		t.Fatalf("GET /v1/presence?users=%s: status %d", users, code)
	}
	return out.Users
}

// TestPresenceDevices: a user is online from its first device to its last;
// one device leaving (network loss, clean DISCONNECT) changes nothing while
// another is connected, and the last one's keep-alive timeout makes the
// user offline with last_seen. MQTT 5 and 3.1.1 devices and subscribers.
func TestPresenceDevices(t *testing.T) { forEachStore(t, testPresenceDevices) }

func testPresenceDevices(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	if rc := bob.Sub(t, "p/alice", 1); rc[0] != 1 {
		t.Fatalf("bob subscribing p/alice: %#x", rc[0])
	}
	// Never seen since the start, yet there is a state.
	if p := waitPresence(t, bob.In, "p/alice", 1); p.User != "alice" || p.Status != "offline" || p.LastSeen != 0 || p.TS != 0 {
		t.Fatalf("first state %+v, want offline, never seen", p)
	}
	carol := n.MustV3("carol", ct, "carol", true)
	if rc := carol.Sub(t, "p/alice", 1); rc != 1 {
		t.Fatalf("v3 carol subscribing p/alice: %#x", rc)
	}
	waitPresence(t, carol.In, "p/alice", 1) // sent after the SUBACK

	before := time.Now().UnixMilli()
	phone := n.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	if p := waitPresence(t, bob.In, "p/alice", 2); p.Status != "online" || p.TS < before || p.TS > time.Now().UnixMilli() {
		t.Fatalf("state after the first device %+v, want online since %d", p, before)
	}
	laptop := n.MustV3("alice", at, "alice/laptop", true)
	dialSilent(t, n, "alice", at, "alice/watch", 1, "")
	waitConnections(t, n, 5) // bob, carol, and alice's three

	phone.Drop() // network loss
	waitConnections(t, n, 4)
	laptop.Disconnect(100) // clean DISCONNECT
	waitConnections(t, n, 3)
	barrier(t, bob, "bob")
	if got := statuses(presences(t, bob.In.All(), "p/alice")); !slices.Equal(got, []string{"offline", "online"}) {
		t.Fatalf("states while the watch is connected: %v; want no change from online", got)
	}

	// The watch never pings: its keep-alive runs out.
	p := waitPresence(t, bob.In, "p/alice", 3)
	if p.Status != "offline" || p.LastSeen < before || p.LastSeen > time.Now().UnixMilli() || p.TS != 0 {
		t.Fatalf("state after the last device %+v, want offline with last_seen", p)
	}
	if v3 := waitPresence(t, carol.In, "p/alice", 3); v3 != p {
		t.Fatalf("v3 subscriber's state %+v, want %+v", v3, p)
	}
	if got := statuses(presences(t, carol.In.All(), "p/alice")); !slices.Equal(got, []string{"offline", "online", "offline"}) {
		t.Fatalf("v3 subscriber's states %v", got)
	}
	got := lookup(t, n, bt, "alice,bob")
	if len(got) != 2 || got[0] != p || got[1].Status != "online" || got[1].TS == 0 {
		t.Fatalf("GET /v1/presence = %+v; want alice %+v and bob online", got, p)
	}
}

// TestPresenceWill: a will on p/{own} fired while another device of the
// user is connected is suppressed; the last device's will makes the user
// offline with the server's state, never the will's payload.
func TestPresenceWill(t *testing.T) { forEachStore(t, testPresenceWill) }

func testPresenceWill(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, dt := n.User("alice"), n.User("bob"), n.User("dave")
	will := &paho.WillMessage{Topic: "p/alice", Payload: []byte("gone"), Retain: true, QoS: 1}
	phone := n.MustV5("alice", at, "alice/phone", brokertest.V5Options{Will: will})
	dialSilent(t, n, "alice", at, "alice/watch", 1, "p/alice") // 3.1.1, with a will
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	bob.Sub(t, "p/alice", 1)
	if p := waitPresence(t, bob.In, "p/alice", 1); p.Status != "online" {
		t.Fatalf("retained state %+v, want online", p)
	}

	phone.Drop() // its will fires while the watch is connected
	waitConnections(t, n, 2)
	barrier(t, bob, "bob")
	if got := presences(t, bob.In.All(), "p/alice"); len(got) != 1 {
		t.Fatalf("states after the phone's will: %+v; want the will suppressed", got)
	}

	// The watch's keep-alive runs out: its will goes, as the server's state.
	if p := waitPresence(t, bob.In, "p/alice", 2); p.Status != "offline" || p.LastSeen == 0 {
		t.Fatalf("state after the last device's will %+v, want offline with last_seen", p)
	}
	waitConnections(t, n, 1)
	barrier(t, bob, "bob")
	if got := statuses(presences(t, bob.In.All(), "p/alice")); !slices.Equal(got, []string{"online", "offline"}) {
		t.Fatalf("states %v; want one offline", got)
	}
	dave := n.MustV3("dave", dt, "dave", true)
	dave.Sub(t, "p/alice", 1)
	if p := waitPresence(t, dave.In, "p/alice", 1); p.Status != "offline" || p.LastSeen == 0 {
		t.Fatalf("retained state for a new subscriber %+v, want the server's offline", p)
	}
}

// TestPresenceAway: devices set away and online on their own presence; the
// user is away only when every device is; anything else is refused.
func TestPresenceAway(t *testing.T) { forEachStore(t, testPresenceAway) }

func testPresenceAway(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	phone := n.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	laptop := n.MustV5("alice", at, "alice/laptop", brokertest.V5Options{})
	// mochi sends CONNACK before OnSessionEstablished counts the device:
	// a SUBACK on the laptop's own connection (its packets are read only
	// after that hook) says it counts.
	laptop.Sub(t, "u/alice", 1)
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	bob.Sub(t, "p/alice", 1)
	waitPresence(t, bob.In, "p/alice", 1)

	if rc := phone.Pub(t, "p/alice", `{"status":"away"}`); rc != 0 {
		t.Fatalf("away: PUBACK %#x", rc)
	}
	barrier(t, bob, "bob")
	if got := presences(t, bob.In.All(), "p/alice"); len(got) != 1 {
		t.Fatalf("states %+v after one of two devices went away; want still online", got)
	}
	before := time.Now().UnixMilli()
	laptop.Pub(t, "p/alice", `{"status":"away"}`)
	if p := waitPresence(t, bob.In, "p/alice", 2); p.Status != "away" || p.TS < before {
		t.Fatalf("state %+v, want away", p)
	}
	phone.Pub(t, "p/alice", ` {"status":"online","note":"back"}`)
	if p := waitPresence(t, bob.In, "p/alice", 3); p.Status != "online" {
		t.Fatalf("state %+v, want online", p)
	}
	cases := map[string]struct {
		topic, payload string
		want           byte
	}{
		"will-like payload":   {"p/alice", "gone", 0x99},
		"offline from client": {"p/alice", `{"status":"offline"}`, 0x99},
		"no status":           {"p/alice", `{}`, 0x99},
		"someone else's":      {"p/bob", `{"status":"away"}`, 0x87},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if rc := phone.Pub(t, c.topic, c.payload); rc != c.want {
				t.Fatalf("PUBACK %#x, want %#x", rc, c.want)
			}
		})
	}
	// A 3.1.1 device gets an error entry in its inbox instead.
	v3 := n.MustV3("alice", at, "alice/v3", true)
	v3.Sub(t, "u/alice", 1)
	if err := v3.Pub(t, "p/alice", `{"status":"busy"}`); err != nil {
		t.Fatal(err)
	}
	if e := v3.In.WaitN(t, 1, protocol.TypeError)[0].Entry(t); e["code"] != float64(0x99) || e["topic"] != "p/alice" {
		t.Fatalf("error entry %v", e)
	}
	barrier(t, bob, "bob")
	if got := statuses(presences(t, bob.In.All(), "p/alice")); !slices.Equal(got, []string{"online", "away", "online"}) {
		t.Fatalf("states %v; refused updates must change nothing", got)
	}
}

// TestPresencePrivacy: privacy limits who may subscribe (SUBACK 0x87, v3
// 0x80) and what the HTTP API shows; changing it ends subscriptions it no
// longer allows.
func TestPresencePrivacy(t *testing.T) { forEachStore(t, testPresencePrivacy) }

func testPresencePrivacy(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	var priv struct{ Privacy string }
	if code := n.HTTPDo("GET", "/v1/me/presence", at, nil, &priv); code != 200 || priv.Privacy != "everyone" {
		t.Fatalf("GET /v1/me/presence: %d %+v; want everyone", code, priv)
	}
	if code := n.HTTPDo("PUT", "/v1/me/presence", at, map[string]string{"privacy": "friends"}, nil); code != 400 {
		t.Fatalf("PUT an unknown privacy: %d, want 400", code)
	}
	if code := n.HTTPDo("PUT", "/v1/me/presence", at, map[string]string{"privacy": "contacts"}, &priv); code != 200 || priv.Privacy != "contacts" {
		t.Fatalf("PUT contacts: %d %+v", code, priv)
	}
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Sub(t, "p/alice", 1) // oneself, always
	waitPresence(t, alice.In, "p/alice", 1)
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	for _, filter := range []string{"p/alice", "p/+", "p/nobody"} {
		if rc := bob.Sub(t, filter, 1); rc[0] != 0x87 {
			t.Errorf("bob subscribing %s: %#x, want 0x87", filter, rc[0])
		}
	}
	carol := n.MustV3("carol", ct, "carol", true)
	if rc := carol.Sub(t, "p/alice", 1); rc != 0x80 {
		t.Errorf("v3 carol subscribing p/alice: %#x, want 0x80", rc)
	}
	got := lookup(t, n, bt, "alice,nobody,bob")
	if got[0] != (protocol.Presence{User: "alice", Status: "hidden"}) || got[1] != (protocol.Presence{User: "nobody", Status: "hidden"}) ||
		got[2].Status != "online" {
		t.Fatalf("GET /v1/presence for a stranger: %+v; want alice and nobody hidden", got)
	}

	// A DM does not make bob alice's contact: her own list does.
	alice.Pub(t, "u/bob", "hi bob")
	bob.In.WaitN(t, 1, protocol.TypeMsg)
	if rc := bob.Sub(t, "p/alice", 1); rc[0] != 0x87 {
		t.Fatalf("bob subscribing p/alice after a DM: %#x, want 0x87", rc[0])
	}
	if code := n.HTTPDo("PUT", "/v1/me/contacts/bob", at, nil, nil); code != 204 {
		t.Fatalf("PUT /v1/me/contacts/bob: %d", code)
	}
	if rc := bob.Sub(t, "p/alice", 1); rc[0] != 1 {
		t.Fatalf("bob subscribing p/alice as a contact: %#x", rc[0])
	}
	if p := waitPresence(t, bob.In, "p/alice", 1); p.Status != "online" {
		t.Fatalf("state %+v, want online", p)
	}
	if got := lookup(t, n, bt, "alice"); got[0].Status != "online" {
		t.Fatalf("GET /v1/presence for a contact: %+v", got)
	}
	admin := n.MustV5(brokertest.Admin, brokertest.AdminPassword, "console", brokertest.V5Options{})
	if rc := admin.Sub(t, "p/alice", 1); rc[0] != 1 {
		t.Fatalf("admin subscribing p/alice: %#x", rc[0])
	}

	// nobody: bob's subscription ends at once.
	if code := n.HTTPDo("PUT", "/v1/me/presence", at, map[string]string{"privacy": "nobody"}, nil); code != 200 {
		t.Fatalf("PUT nobody: %d", code)
	}
	alice.Pub(t, "p/alice", `{"status":"away"}`)
	if p := waitPresence(t, admin.In, "p/alice", 2); p.Status != "away" {
		t.Fatalf("admin sees %+v, want away", p)
	}
	alice.Pub(t, "u/bob", "after the change") // sent after the away: bob has it once it has all before it
	bob.In.WaitFor(t, 10*time.Second, "alice's second DM", func(ms []brokertest.Msg) bool {
		return slices.ContainsFunc(ms, func(m brokertest.Msg) bool { return bytes.Contains(m.Payload, []byte("after the change")) })
	})
	if got := presences(t, bob.In.All(), "p/alice"); len(got) != 1 {
		t.Fatalf("bob received %+v after alice chose nobody", got)
	}
	if rc := bob.Sub(t, "p/alice", 1); rc[0] != 0x87 {
		t.Fatalf("bob subscribing again: %#x, want 0x87", rc[0])
	}
	if got := lookup(t, n, bt, "alice"); got[0].Status != "hidden" {
		t.Fatalf("GET /v1/presence after nobody: %+v", got)
	}
	if got := lookup(t, n, at, "alice"); got[0].Status != "away" {
		t.Fatalf("alice's own presence: %+v", got)
	}
	cases := map[string]struct {
		query string
		want  int
	}{
		"no users":     {"", 400},
		"invalid id":   {"?users=Alice!", 400},
		"too many":     {"?users=" + manyUsers(101), 400},
		"repeats once": {"?users=bob,bob,,bob", 200},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var out presenceAnswer
			if code := n.HTTPDo("GET", "/v1/presence"+c.query, bt, nil, &out); code != c.want {
				t.Fatalf("status %d, want %d", code, c.want)
			}
			if c.want == 200 && len(out.Users) != 1 {
				t.Fatalf("answer %+v, want bob once", out)
			}
		})
	}
	if code := n.HTTPDo("GET", "/v1/presence?users=alice", "", nil, nil); code != 401 {
		t.Fatalf("no token: %d, want 401", code)
	}
}

func manyUsers(k int) string {
	ids := make([]string, k)
	for i := range ids {
		ids[i] = "u" + strconv.Itoa(i)
	}
	return strings.Join(ids, ",")
}

// TestPresenceAfterRestart: last_seen survives a restart, and after it
// nobody is shown online who is not connected: not on p/{user}, not in the
// HTTP API.
func TestPresenceAfterRestart(t *testing.T) { forEachStore(t, testPresenceAfterRestart) }

func testPresenceAfterRestart(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "p/alice", 1)
	bob.Sub(t, "p/carol", 1)
	waitPresence(t, bob.In, "p/alice", 1)
	waitPresence(t, bob.In, "p/carol", 1)
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	waitPresence(t, bob.In, "p/alice", 2)
	alice.Close()
	left := waitPresence(t, bob.In, "p/alice", 3)
	if left.Status != "offline" || left.LastSeen == 0 {
		t.Fatalf("state %+v, want offline", left)
	}
	n.MustV3("carol", ct, "carol", false) // still connected when the node stops
	if p := waitPresence(t, bob.In, "p/carol", 2); p.Status != "online" {
		t.Fatalf("carol %+v, want online", p)
	}
	n.Stop()

	n2 := brokertest.Start(t, brokertest.Options{Store: o.Store, DBURL: n.DBURL})
	got := lookup(t, n2, bt, "alice,carol")
	if got[0] != left {
		t.Fatalf("alice after the restart %+v, want %+v", got[0], left)
	}
	if got[1].Status != "offline" || got[1].LastSeen == 0 {
		t.Fatalf("carol after the restart %+v, want offline with last_seen", got[1])
	}
	bob = n2.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "p/alice", 1)
	bob.Sub(t, "p/carol", 1)
	if p := waitPresence(t, bob.In, "p/alice", 1); p != left {
		t.Fatalf("p/alice after the restart %+v, want %+v", p, left)
	}
	if p := waitPresence(t, bob.In, "p/carol", 1); p != got[1] {
		t.Fatalf("p/carol after the restart %+v, want %+v", p, got[1])
	}
}

// TestPresenceTakeover: a device reconnecting with the same client id takes
// its session over: the user stays online, without an offline in between
// (the old connection's will included), and counts once.
func TestPresenceTakeover(t *testing.T) { forEachStore(t, testPresenceTakeover) }

func testPresenceTakeover(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	bob.Sub(t, "p/alice", 1)
	// mochi sends the retained state after the SUBACK: wait for it, so that
	// it cannot be alice's online instead.
	waitPresence(t, bob.In, "p/alice", 1)
	will := &paho.WillMessage{Topic: "p/alice", Payload: []byte("gone"), Retain: true, QoS: 1}
	n.MustV5("alice", at, "alice/phone", brokertest.V5Options{Will: will, SessionExpiry: 3600})
	waitPresence(t, bob.In, "p/alice", 2) // offline (never seen), online
	phone := n.MustV5("alice", at, "alice/phone", brokertest.V5Options{Will: will, SessionExpiry: 3600})
	n.MustV3("alice", at, "alice/v3", false)
	v3 := n.MustV3("alice", at, "alice/v3", false)
	waitConnections(t, n, 3) // bob, and alice's two devices
	barrier(t, bob, "bob")
	if got := statuses(presences(t, bob.In.All(), "p/alice")); !slices.Equal(got, []string{"offline", "online"}) {
		t.Fatalf("states after two takeovers: %v; want online throughout", got)
	}
	phone.Close()
	v3.Disconnect(100)
	if p := waitPresence(t, bob.In, "p/alice", 3); p.Status != "offline" {
		t.Fatalf("state after both devices left %+v, want offline", p)
	}
}
