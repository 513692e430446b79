package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
)

// The hostile suite: what one client, broken or malicious, can send must not
// end the node, stall other users or fail their messages. Each test is
// bounded in count and time and talks to a real node over real sockets.

// rawV5Connect returns an encoded MQTT 5 CONNECT.
func rawV5Connect(t testing.TB, user, secret, clientID string) []byte {
	t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60,
			ClientIdentifier: clientID, UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(secret)}}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readPacket reads one MQTT packet: its first byte and its body.
func readPacket(r io.Reader) (byte, []byte, error) {
	var first [1]byte
	if _, err := io.ReadFull(r, first[:]); err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; i < 4; i++ {
		var b [1]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n += int(b[0]&0x7f) * mult
		if b[0]&0x80 == 0 {
			break
		}
		mult *= 128
	}
	body := make([]byte, n)
	_, err := io.ReadFull(r, body)
	return first[0], body, err
}

// dialRawV5 connects over TCP with a hand-made MQTT 5 CONNECT and reads
// the CONNACK.
func dialRawV5(t *testing.T, n *brokertest.Node, user, secret, clientID string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", n.MQTT, brokertest.Patience(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(rawV5Connect(t, user, secret, clientID)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(brokertest.Patience(5 * time.Second)))
	typ, body, err := readPacket(conn)
	if err != nil || typ != 0x20 || len(body) < 2 || body[1] != 0 {
		t.Fatalf("CONNACK %#x % x, %v", typ, body, err)
	}
	return conn
}

// serving checks that the node still does its job: a DM from a fresh
// client to a fresh subscriber is stored and delivered.
func serving(t *testing.T, n *brokertest.Node, tag string) {
	t.Helper()
	from, to := "s-"+tag, "r-"+tag
	rc := n.MustV5(to, n.User(to), to, brokertest.V5Options{})
	rc.Sub(t, protocol.UserInbox(to), 1)
	sc := n.MustV5(from, n.User(from), from, brokertest.V5Options{})
	if code := sc.Pub(t, protocol.UserInbox(to), "still serving"); code != 0 {
		t.Fatalf("PUBACK %#x after the hostile input", code)
	}
	rc.In.WaitN(t, 1, protocol.TypeMsg)
}

// expectDisconnect reads until the server closes the connection and
// returns the reason code of the DISCONNECT it sent first, or -1 if none.
func expectDisconnect(t *testing.T, conn net.Conn) int {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(brokertest.Patience(10 * time.Second)))
	code := -1
	for {
		typ, body, err := readPacket(conn)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the server kept the connection open")
			}
			return code
		}
		if typ == 0xe0 && len(body) > 0 {
			code = int(body[0])
		}
	}
}

// TestMalformedSubscribe: the 8-byte MQTT 5 SUBSCRIBE whose filter has no
// options byte used to panic mochi's decoder and end the process (over TCP)
// or leave a half-attached client with ghost presence (over WebSocket).
// Now the client is told 0x81 Malformed packet and closed; the node serves
// on, and the user is offline again.
func TestMalformedSubscribe(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Store: brokertest.SQLite})
	bt := n.User("bob")
	evil := []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61}

	t.Run("tcp", func(t *testing.T) {
		conn := dialRawV5(t, n, "bob", bt, "bob/tcp")
		if _, err := conn.Write(evil); err != nil {
			t.Fatal(err)
		}
		if code := expectDisconnect(t, conn); code != 0x81 {
			t.Fatalf("DISCONNECT reason %#x, want 0x81 Malformed packet", code)
		}
		n.WaitGone(t, "bob/tcp")
		serving(t, n, "tcp")
	})
	t.Run("websocket", func(t *testing.T) {
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: brokertest.Patience(5 * time.Second)}
		ws, _, err := d.Dial("ws://"+n.WS+"/mqtt", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if err := ws.WriteMessage(websocket.BinaryMessage, rawV5Connect(t, "bob", bt, "bob/ws")); err != nil {
			t.Fatal(err)
		}
		ws.SetReadDeadline(time.Now().Add(brokertest.Patience(5 * time.Second)))
		if _, ack, err := ws.ReadMessage(); err != nil || ack[0] != 0x20 {
			t.Fatalf("CONNACK % x, %v", ack, err)
		}
		if err := ws.WriteMessage(websocket.BinaryMessage, evil); err != nil {
			t.Fatal(err)
		}
		code := -1
		for {
			_, m, err := ws.ReadMessage()
			if err != nil {
				break
			}
			if len(m) > 2 && m[0] == 0xe0 {
				code = int(m[2])
			}
		}
		if code != 0x81 {
			t.Fatalf("DISCONNECT reason %#x, want 0x81", code)
		}
		n.WaitGone(t, "bob/ws")
		serving(t, n, "ws")
	})
	// No ghost: with both connections gone, bob is offline.
	testwait.Until(t, 5*time.Second, "bob offline after both connections ended", func() bool {
		var p struct{ Users []protocol.Presence }
		if code := n.HTTPDo("GET", "/v1/presence?users=bob", bt, nil, &p); code != 200 {
			t.Fatalf("GET /v1/presence: %d", code)
		}
		return len(p.Users) == 1 && p.Users[0].Status == protocol.StatusOffline
	})
}

// TestOversizedPacket: a packet over the announced Maximum Packet Size is
// answered with DISCONNECT 0x95 (MQTT 5), not a reset, and costs nothing
// beyond its header: the server refuses it before reading the body.
func TestOversizedPacket(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Store: brokertest.SQLite, Config: brokertestConfig()})
	bt := n.User("bob")
	conn := dialRawV5(t, n, "bob", bt, "bob/big")
	// A PUBLISH announcing 1 MiB, of which only the topic is sent.
	hdr := []byte{0x30, 0x80, 0x80, 0x40}
	if _, err := conn.Write(append(hdr, rawString("u/bob")...)); err != nil {
		t.Fatal(err)
	}
	if code := expectDisconnect(t, conn); code != 0x95 {
		t.Fatalf("DISCONNECT reason %#x, want 0x95 Packet too large", code)
	}
	serving(t, n, "big")
}

// TestStuckSubscriberStallsNobody: a subscriber that stops reading its
// socket (while its connection stays open) must cost only itself. Its
// publisher's PUBACKs and other users' keep coming while it is still
// connected — the write timeout is set far beyond the test — and it is cut
// off as a slow consumer once its outbound queue is full.
func TestStuckSubscriberStallsNobody(t *testing.T) {
	cfg := brokertestConfig()
	cfg.MaxPayload = 60 << 10
	cfg.WriteTimeout = time.Hour
	n := brokertest.Start(t, brokertest.Options{Store: brokertest.SQLite, Config: cfg})
	at, bt := n.User("alice"), n.User("bob")

	// bob: CONNECT, SUBSCRIBE u/bob, read the SUBACK, then never read again.
	conn := dialRawV5(t, n, "bob", bt, "bob/stuck")
	sub := append([]byte{0, 1, 0}, rawString("u/bob")...)
	if _, err := conn.Write(rawPacket(0x82, append(sub, 1))); err != nil {
		t.Fatal(err)
	}
	if typ, body, err := readPacket(conn); err != nil || typ != 0x90 || body[len(body)-1] != 1 {
		t.Fatalf("SUBACK %#x % x, %v", typ, body, err)
	}

	// Others write to each other meanwhile: none of them may wait on bob.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 4; i++ {
		from, to := fmt.Sprintf("c%d", i), fmt.Sprintf("d%d", i)
		c := n.MustV5(from, n.User(from), from, brokertest.V5Options{})
		n.User(to)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				ctx, cancel := context.WithTimeout(context.Background(), brokertest.Patience(10*time.Second))
				pr, err := c.Publish(ctx, &paho.Publish{Topic: protocol.UserInbox(to), QoS: 1, Payload: []byte("hi")})
				cancel()
				if err != nil || pr.ReasonCode != 0 {
					errs <- fmt.Errorf("%s -> %s: %v", from, to, err)
					return
				}
			}
		}()
	}

	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	big := `{"body":{"text":"` + strings.Repeat("x", 55<<10) + `"}}`
	for i := 0; i < 400; i++ { // ~22 MB: far more than loopback buffers and bob's queue hold
		if rc := alice.Pub(t, "u/bob", big); rc != 0 {
			t.Fatalf("publish %d: %#x", i, rc)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// bob was cut off as a slow consumer, long before the write timeout.
	n.WaitGone(t, "bob/stuck")
	if got := metricValueOf(t, n, "parley_slow_consumers_disconnected_total"); got < 1 {
		t.Fatalf("parley_slow_consumers_disconnected_total = %v, want ≥ 1", got)
	}
}

// metricValueOf sums the samples of a counter or gauge in the node's
// registry.
func metricValueOf(t *testing.T, n *brokertest.Node, name string) float64 {
	t.Helper()
	mfs, err := n.Srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return v
}
