package hooks

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/google/uuid"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/sqlite"
)

// The unit tests of the Inbox's parts run a real mochi server with the
// Inbox hook on a loopback port, real paho clients, and the embedded SQLite
// store: no Postgres. broker/ runs the same paths end to end on both stores.

// testNode is one mochi server with the Inbox hook.
type testNode struct {
	t     *testing.T
	srv   *mqtt.Server
	inbox *Inbox
	store *sqlite.Store
	addr  string
}

// testLog logs to t.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// startNode starts a node whose store holds users; "admin" is an
// administrator. configure, if set, adjusts the hook before it starts.
func startNode(t *testing.T, cfg InboxConfig, users []string, configure func(*Inbox)) *testNode {
	t.Helper()
	log := testLog(t)
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "parley.db")}, log)
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	for _, u := range users {
		if err := store.CreateUser(context.Background(), storage.User{ID: u, Name: u, PasswordHash: "x", CreatedAt: time.Now()}); err != nil {
			t.Fatalf("create user %s: %v", u, err)
		}
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: log.With("component", "mqtt")})
	h := NewInbox(cfg, store, srv, func(u string) bool { return u == "admin" }, nil, log.With("component", "inbox"))
	if configure != nil {
		configure(h)
	}
	must(t, srv.AddHook(&gateHook{gate: h}, nil), "add gate hook")
	must(t, srv.AddHook(h, nil), "add inbox hook")
	ln := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	must(t, srv.AddListener(ln), "add listener")
	must(t, srv.Serve(), "serve")
	h.Start()
	t.Cleanup(func() {
		srv.Close()
		h.Close()
	})
	return &testNode{t: t, srv: srv, inbox: h, store: store, addr: ln.Address()}
}

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// gateHook admits every client and asks the Inbox about deliveries to
// subscribers, as hooks.Auth does (its credential checks are tested in
// broker/).
type gateHook struct {
	mqtt.HookBase
	gate DeliveryGate
}

func (g *gateHook) ID() string { return "test-gate" }

func (g *gateHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (g *gateHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (g *gateHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write || cl.Net.Inline {
		return true
	}
	if _, ok := cl.State.Subscriptions.Get(topic); ok {
		return g.gate.AllowDelivery(cl, topic)
	}
	return true
}

// testDevice is a paho MQTT 5 client of the test node that records the
// entries it receives.
type testDevice struct {
	*paho.Client
	conn net.Conn

	mu  sync.Mutex
	got []protocol.Header
}

// connect connects a device of user with client id cid; persistent
// sessions outlive the connection (clean start false, session expiry 1h).
func (n *testNode) connect(user, cid string, persistent bool) *testDevice {
	n.t.Helper()
	conn, err := net.Dial("tcp", n.addr)
	must(n.t, err, "dial")
	d := &testDevice{conn: conn}
	d.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn, ClientID: cid,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			if hd, ok := protocol.PeekHeader(pr.Packet.Payload); ok {
				d.mu.Lock()
				d.got = append(d.got, hd)
				d.mu.Unlock()
			}
			return true, nil
		}},
		OnClientError: func(error) {},
		PacketTimeout: testwait.Patience(10 * time.Second),
	})
	c := &paho.Connect{ClientID: cid, Username: user, UsernameFlag: true, CleanStart: !persistent, KeepAlive: 30}
	if persistent {
		exp := uint32(3600)
		c.Properties = &paho.ConnectProperties{SessionExpiryInterval: &exp}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Patience(5*time.Second))
	defer cancel()
	_, err = d.Connect(ctx, c)
	must(n.t, err, "connect "+cid)
	n.t.Cleanup(func() { conn.Close() })
	return d
}

// subscribe subscribes to topic at QoS 1 and returns the SUBACK's code.
func (d *testDevice) subscribe(t *testing.T, topic string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Patience(5*time.Second))
	defer cancel()
	sa, err := d.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}})
	if sa == nil {
		must(t, err, "subscribe "+topic)
	}
	return sa.Reasons[0]
}

// publish publishes at QoS 1 and returns the PUBACK's reason code.
func (d *testDevice) publish(t *testing.T, topic string, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Patience(10*time.Second))
	defer cancel()
	pr, err := d.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		must(t, err, "publish to "+topic)
	}
	return pr.ReasonCode
}

// received returns the headers of what the device got so far.
func (d *testDevice) received() []protocol.Header {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]protocol.Header(nil), d.got...)
}

// seqs returns the seqs of what the device got of inbox and type typ, in
// the order received.
func (d *testDevice) seqs(inbox, typ string) []int64 {
	var out []int64
	for _, h := range d.received() {
		if h.Inbox == inbox && h.Type == typ {
			out = append(out, h.Seq)
		}
	}
	return out
}

// waitFor waits until the device has an entry of inbox with seq.
func (d *testDevice) waitFor(t *testing.T, inbox string, seq int64) {
	t.Helper()
	testwait.Until(t, 5*time.Second, "entry "+inbox+" seq received", func() bool {
		for _, h := range d.received() {
			if h.Inbox == inbox && h.Seq == seq {
				return true
			}
		}
		return false
	})
}

// commit stores a message from from into to's inbox, as the publish path
// would, and returns its entry (not delivered).
func (n *testNode) commit(from, to, text string) protocol.Entry {
	n.t.Helper()
	id, err := uuid.NewV7()
	must(n.t, err, "id")
	es, _, err := n.store.Append(context.Background(), storage.Message{ID: id.String(), From: from, To: to, TS: time.Now().UnixMilli(),
		Type: protocol.TypeMsg, Data: []byte(`{"text":"` + text + `"}`), Inboxes: []string{protocol.UserInbox(to)}})
	must(n.t, err, "append")
	return es[0]
}
