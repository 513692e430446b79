package broker_test

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
)

// rawPacket encodes an MQTT packet: a first byte and a body.
func rawPacket(first byte, body []byte) []byte {
	out := []byte{first}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func rawString(s string) []byte {
	b := make([]byte, 2, 2+len(s))
	binary.BigEndian.PutUint16(b, uint16(len(s)))
	return append(b, s...)
}

// TestClientThatStopsReading: a subscriber that stops reading its socket
// (but keeps its connection) must not hold up the publishers delivering to
// it: its writes time out, it is disconnected, and publishing goes on.
func TestClientThatStopsReading(t *testing.T) {
	cfg := brokertestConfig()
	cfg.MaxPayload = 60 << 10
	cfg.WriteTimeout = time.Second
	n := brokertest.Start(t, brokertest.Options{Store: brokertest.SQLite, Config: cfg})
	at, bt := n.User("alice"), n.User("bob")

	// bob, by hand: CONNECT, SUBSCRIBE u/bob, then never read again.
	conn, err := net.Dial("tcp", n.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var connect []byte
	connect = append(connect, rawString("MQTT")...)
	connect = append(connect, 4, 0xC2, 0, 60)
	connect = append(connect, rawString("bob")...)
	connect = append(connect, rawString("bob")...)
	connect = append(connect, rawString(bt)...)
	sub := append([]byte{0, 1}, rawString("u/bob")...)
	sub = append(sub, 1)
	if _, err := conn.Write(append(rawPacket(0x10, connect), rawPacket(0x82, sub)...)); err != nil {
		t.Fatal(err)
	}
	// Read the CONNACK and the SUBACK, so the subscription is in place, and
	// nothing after them.
	conn.SetReadDeadline(time.Now().Add(brokertest.Patience(5 * time.Second)))
	acks := make([]byte, 4+5)
	if _, err := io.ReadFull(conn, acks); err != nil || acks[0] != 0x20 || acks[3] != 0 || acks[4] != 0x90 || acks[8] != 1 {
		t.Fatalf("CONNACK and SUBACK: % x, %v", acks, err)
	}

	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	big := `{"body":{"text":"` + strings.Repeat("x", 55<<10) + `"}}`
	start := time.Now()
	for i := 0; i < 400; i++ { // ~22 MB: more than loopback buffers hold
		if rc := alice.Pub(t, "u/bob", big); rc != 0 {
			t.Fatalf("publish %d: %#x", i, rc)
		}
	}
	t.Logf("400 publishes to a stuck subscriber took %v", time.Since(start).Round(time.Millisecond))
	// bob was cut off: his socket reads EOF once the buffered bytes are drained.
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 1<<20)
	for {
		if _, err := conn.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the stuck subscriber was not disconnected")
			}
			break
		}
	}
}
