package brokertest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/protocol"
)

// Msg is a message a test client received.
type Msg struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Dup      bool   // the DUP flag: a redelivery
	PacketID uint16 // MQTT 5 clients only
}

// Entry decodes the payload as a Parley entry.
func (m Msg) Entry(t testing.TB) map[string]any {
	t.Helper()
	var e map[string]any
	if err := json.Unmarshal(m.Payload, &e); err != nil {
		t.Fatalf("entry on %s is not JSON: %q", m.Topic, m.Payload)
	}
	return e
}

// Header reads the stamped header of the payload.
func (m Msg) Header(t testing.TB) protocol.Header {
	t.Helper()
	h, ok := protocol.PeekHeader(m.Payload)
	if !ok {
		t.Fatalf("not an entry on %s: %q", m.Topic, m.Payload)
	}
	return h
}

// Inbox collects what a client receives.
type Inbox struct {
	mu   sync.Mutex
	msgs []Msg
	ch   chan struct{}
}

func newInbox() *Inbox { return &Inbox{ch: make(chan struct{}, 1)} }

func (b *Inbox) add(m Msg) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
	select {
	case b.ch <- struct{}{}:
	default:
	}
}

// All returns everything received so far.
func (b *Inbox) All() []Msg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Msg(nil), b.msgs...)
}

// WaitFor waits until pred holds for what was received, or fails the test.
func (b *Inbox) WaitFor(t testing.TB, d time.Duration, what string, pred func([]Msg) bool) []Msg {
	t.Helper()
	d = Patience(d)
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		all := b.All()
		if pred(all) {
			return all
		}
		select {
		case <-b.ch:
		case <-deadline.C:
			all = b.All()
			var got []string
			for _, m := range all {
				got = append(got, m.Topic+" "+string(m.Payload))
			}
			t.Fatalf("timed out after %v waiting for %s; received %d:\n%v", d, what, len(all), got)
		}
	}
}

// WaitN waits for at least n messages whose entry type is typ ("" for any).
func (b *Inbox) WaitN(t testing.TB, n int, typ string) []Msg {
	t.Helper()
	var out []Msg
	b.WaitFor(t, 10*time.Second, "entries", func(ms []Msg) bool {
		out = out[:0]
		for _, m := range ms {
			if typ == "" {
				out = append(out, m)
				continue
			}
			if h, ok := protocol.PeekHeader(m.Payload); ok && h.Type == typ {
				out = append(out, m)
			}
		}
		return len(out) >= n
	})
	return out
}

// V5 is an MQTT 5 client (paho.golang).
type V5 struct {
	*paho.Client
	In      *Inbox
	Connack *paho.Connack
	conn    net.Conn
	// ServerDisconnect receives the server's DISCONNECT, if it sends one.
	ServerDisconnect chan *paho.Disconnect
}

// V5Options tune a v5 connection.
type V5Options struct {
	CleanStart    bool
	SessionExpiry uint32
	ManualAck     bool // acknowledge with Ack; the default acknowledges on receipt
	Will          *paho.WillMessage
	KeepAlive     uint16
	// ReceiveMaximum is announced in CONNECT; paho allocates a queue of
	// this size per client, so clients in bulk should keep it small.
	ReceiveMaximum uint16
	// Conn, if set, is the connection to speak MQTT on (TLS, or WSConn)
	// instead of a new TCP connection to the node's MQTT address.
	Conn net.Conn
}

// DialV5 connects an MQTT 5 client and returns it with the CONNACK; a
// refused connection returns the CONNACK and an error.
func (n *Node) DialV5(user, secret, clientID string, o V5Options) (*V5, error) {
	n.T.Helper()
	conn := o.Conn
	if conn == nil {
		var err error
		if conn, err = net.DialTimeout("tcp", n.MQTT, Patience(5*time.Second)); err != nil {
			n.T.Fatalf("dial: %v", err)
		}
	}
	if _, ok := conn.(sync.Locker); !ok {
		// paho writes a packet in several Writes (net.Buffers), which only
		// a TCP connection makes one writev: on anything else (tls.Conn)
		// two goroutines' packets interleave unless the connection is a
		// sync.Locker, which paho then holds for each packet.
		conn = packets.NewThreadSafeConn(conn)
	}
	in := newInbox()
	gone := make(chan *paho.Disconnect, 1)
	c := paho.NewClient(paho.ClientConfig{
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case gone <- d:
			default:
			}
		},
		Conn:                       conn,
		ClientID:                   clientID,
		EnableManualAcknowledgment: o.ManualAck,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			in.add(Msg{Topic: pr.Packet.Topic, Payload: pr.Packet.Payload, QoS: pr.Packet.QoS, Dup: pr.Packet.Duplicate(), PacketID: pr.Packet.PacketID})
			return true, nil
		}},
		OnClientError: func(error) {},
		// A publish waits for a commit; on a loaded machine with the race
		// detector that can take longer than paho's default of 10s.
		PacketTimeout: Patience(10 * time.Second),
	})
	ka := o.KeepAlive
	if ka == 0 {
		ka = 30
	}
	cp := &paho.Connect{ClientID: clientID, Username: user, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true,
		CleanStart: o.CleanStart, KeepAlive: ka, WillMessage: o.Will,
		// RequestProblemInfo as MQTT 5 clients send it by default (paho's
		// zero value would ask the server for no reason strings).
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &o.SessionExpiry, RequestProblemInfo: true}}
	if o.ReceiveMaximum > 0 {
		cp.Properties.ReceiveMaximum = &o.ReceiveMaximum
	}
	ctx, cancel := context.WithTimeout(context.Background(), Patience(5*time.Second))
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	v := &V5{Client: c, In: in, Connack: ack, conn: conn, ServerDisconnect: gone}
	if err != nil {
		conn.Close()
		return v, err
	}
	n.T.Cleanup(func() { v.Close() })
	return v, nil
}

// MustV5 connects or fails the test.
func (n *Node) MustV5(user, secret, clientID string, o V5Options) *V5 {
	n.T.Helper()
	c, err := n.DialV5(user, secret, clientID, o)
	must(n.T, err, "connect %s as %s", clientID, user)
	return c
}

// Close disconnects cleanly (ignores errors: it may be gone already).
func (c *V5) Close() {
	_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	c.conn.Close()
}

// Drop cuts the connection without DISCONNECT, like a lost network.
func (c *V5) Drop() { c.conn.Close() }

// Sub subscribes and returns the SUBACK reason codes.
func (c *V5) Sub(t testing.TB, topic string, qos byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Patience(5*time.Second))
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: qos}}})
	if sa == nil {
		must(t, err, "subscribe %s", topic)
	}
	return sa.Reasons
}

// Pub publishes at QoS 1 and returns the PUBACK reason code.
func (c *V5) Pub(t testing.TB, topic, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Patience(10*time.Second))
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		must(t, err, "publish to %s", topic)
	}
	if pr.ReasonCode >= 0x80 {
		// Tests of refusals check the code; for the others this line says
		// why a message that was waited for never came.
		reason := ""
		if pr.Properties != nil {
			reason = pr.Properties.ReasonString
		}
		t.Logf("PUBACK %#x %q for a publish to %s", pr.ReasonCode, reason, topic)
	}
	return pr.ReasonCode
}

// V3 is an MQTT 3.1.1 client (paho.mqtt.golang).
type V3 struct {
	paho3.Client
	In *Inbox
}

// DialV3 connects an MQTT 3.1.1 client. clean=false keeps a persistent session.
func (n *Node) DialV3(user, secret, clientID string, clean bool) (*V3, error) {
	n.T.Helper()
	in := newInbox()
	opts := paho3.NewClientOptions().AddBroker("tcp://" + n.MQTT).SetClientID(clientID).
		SetUsername(user).SetPassword(secret).SetCleanSession(clean).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(Patience(5 * time.Second)).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) {
			in.add(Msg{Topic: m.Topic(), Payload: m.Payload(), QoS: m.Qos()})
		})
	c := paho3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(Patience(10 * time.Second)) {
		n.T.Fatalf("v3 connect %s: timeout", clientID)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	v := &V3{Client: c, In: in}
	n.T.Cleanup(func() { c.Disconnect(100) })
	return v, nil
}

// MustV3 connects or fails the test.
func (n *Node) MustV3(user, secret, clientID string, clean bool) *V3 {
	n.T.Helper()
	c, err := n.DialV3(user, secret, clientID, clean)
	must(n.T, err, "v3 connect %s", clientID)
	return c
}

// Sub subscribes; it returns the granted QoS (0x80 for a refusal).
func (c *V3) Sub(t testing.TB, topic string, qos byte) byte {
	t.Helper()
	tok := c.Subscribe(topic, qos, nil)
	if !tok.WaitTimeout(Patience(5 * time.Second)) {
		t.Fatalf("v3 subscribe %s: timeout", topic)
	}
	st := tok.(*paho3.SubscribeToken)
	return st.Result()[topic]
}

// Pub publishes at QoS 1 and waits for the PUBACK; it returns the error
// (a connection lost before the PUBACK is one).
func (c *V3) Pub(t testing.TB, topic, payload string) error {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(Patience(10 * time.Second)) {
		return context.DeadlineExceeded
	}
	return tok.Error()
}

// MustWS connects an MQTT 5 client over WebSocket (subprotocol mqtt).
func (n *Node) MustWS(t testing.TB, user, secret, clientID string) *V5 {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: Patience(5 * time.Second)}
	ws, resp, err := d.Dial("ws://"+n.WS+"/mqtt", nil)
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	resp.Body.Close()
	if ws.Subprotocol() != "mqtt" {
		t.Fatalf("websocket subprotocol %q, want mqtt", ws.Subprotocol())
	}
	conn := &wsClientConn{Conn: ws.UnderlyingConn(), ws: ws}
	in := newInbox()
	gone := make(chan *paho.Disconnect, 1)
	c := paho.NewClient(paho.ClientConfig{
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case gone <- d:
			default:
			}
		},
		Conn: conn, ClientID: clientID,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			in.add(Msg{Topic: pr.Packet.Topic, Payload: pr.Packet.Payload, QoS: pr.Packet.QoS, Dup: pr.Packet.Duplicate(), PacketID: pr.Packet.PacketID})
			return true, nil
		}},
		OnClientError: func(error) {},
		// A publish waits for a commit; on a loaded machine with the race
		// detector that can take longer than paho's default of 10s.
		PacketTimeout: Patience(10 * time.Second),
	})
	ctx, cancel := context.WithTimeout(context.Background(), Patience(5*time.Second))
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, Username: user, UsernameFlag: true,
		Password: []byte(secret), PasswordFlag: true, CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("websocket connect: %v", err)
	}
	v := &V5{Client: c, In: in, Connack: ack, conn: conn, ServerDisconnect: gone}
	t.Cleanup(func() { v.Close() })
	return v
}

// WSConn adapts a dialled WebSocket to the byte stream an MQTT client
// speaks (V5Options.Conn).
func WSConn(ws *websocket.Conn) net.Conn { return &wsClientConn{Conn: ws.UnderlyingConn(), ws: ws} }

// wsClientConn adapts a WebSocket to the byte stream paho expects.
//
// paho writes a packet in several Write calls (net.Buffers.WriteTo: one
// per part), each a WebSocket message here; it holds the writer's lock
// across them only if the writer is a sync.Locker. Without Lock and Unlock
// a PUBACK written by paho's reader goroutine could land between the parts
// of a SUBSCRIBE written by the test, and the server would read a malformed
// packet.
type wsClientConn struct {
	net.Conn
	ws     *websocket.Conn
	r      io.Reader
	packet sync.Mutex // held by paho across the writes of one packet
	mu     sync.Mutex // serialises WebSocket writes
}

// Lock and Unlock make paho write each packet whole (packets.WriteTo).
func (c *wsClientConn) Lock()   { c.packet.Lock() }
func (c *wsClientConn) Unlock() { c.packet.Unlock() }

func (c *wsClientConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			return n, nil
		}
		return n, err
	}
}

func (c *wsClientConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsClientConn) Close() error { return c.ws.Close() }
