package broker_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/broker/brokertest"
)

// CONNACK codes, end to end on raw sockets: MQTT 5 enhanced authentication
// is refused, and an MQTT 3.1.1 client never receives an MQTT 5 code.

// TestConnectAuthenticationMethodRefused: an MQTT 5 CONNECT with an
// Authentication Method (enhanced authentication, AUTH) is refused with
// CONNACK 0x8C bad authentication method, even with a valid token: Parley
// supports no method, and must not admit the client on its password alone
// [MQTT-4.12.0-1].
func TestConnectAuthenticationMethodRefused(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	at := n.User("alice")
	for name, secret := range map[string]string{"valid token": at, "wrong token": "not-the-token"} {
		t.Run(name, func(t *testing.T) {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
				Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "alice/scram",
					UsernameFlag: true, Username: []byte("alice"), PasswordFlag: true, Password: []byte(secret)},
				Properties: packets.Properties{AuthenticationMethod: "SCRAM-SHA-256", AuthenticationData: []byte("n,,n=alice,r=abc")}}
			var buf bytes.Buffer
			if err := pk.ConnectEncode(&buf); err != nil {
				t.Fatal(err)
			}
			conn := dialRaw(t, n.MQTT)
			if _, err := conn.Write(buf.Bytes()); err != nil {
				t.Fatal(err)
			}
			ack := readConnack(t, conn, bufio.NewReader(conn), 5)
			if ack.ReasonCode != packets.ErrBadAuthenticationMethod.Code {
				t.Fatalf("CONNACK %#x %q, want 0x8C bad authentication method", ack.ReasonCode, ack.Properties.ReasonString)
			}
			waitClosed(t, conn, 5*time.Second, "refused connection")
		})
	}
	if n.Srv.Connected("alice/scram") {
		t.Fatal("a client asking for enhanced authentication was admitted")
	}
}

// TestV3ConnackCodes: every refusal an MQTT 3.1.1 client can provoke with
// its CONNECT is answered with a 3.1.1 return code (1-5) or by closing the
// connection, never with an MQTT 5 reason code such as 0x82 protocol error.
func TestV3ConnackCodes(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	at := n.User("alice")
	valid := func() []byte { return connectPacket(t, 4, "alice", at, 30) }
	// A 3.1.1 CONNECT of this size: fixed header (2 bytes), protocol name
	// (2+4), protocol level at 8, connect flags at 9.
	for name, c := range map[string]struct {
		mutate func([]byte) []byte
		want   byte // 0: any 3.1.1 refusal or a close
	}{
		"reserved flag set":          {func(b []byte) []byte { b[9] |= 0x01; return b }, 0},
		"will retain without a will": {func(b []byte) []byte { b[9] |= 0x20; return b }, 0},
		"unknown protocol name":      {func(b []byte) []byte { b[7] = 'X'; return b }, 0},
		"protocol level 6":           {func(b []byte) []byte { b[8] = 6; return b }, 0},
		"protocol level 3 as MQTT":   {func(b []byte) []byte { b[8] = 3; return b }, 0x01},
		"wrong token":                {func(b []byte) []byte { return connectPacket(t, 4, "alice", "wrong", 30) }, 0x04},
	} {
		t.Run(name, func(t *testing.T) {
			conn := dialRaw(t, n.MQTT)
			if _, err := conn.Write(c.mutate(valid())); err != nil {
				t.Fatal(err)
			}
			code, acked := readV3Refusal(t, conn)
			switch {
			case !acked && c.want == 0:
			case !acked:
				t.Fatalf("closed without CONNACK, want return code %d", c.want)
			case code < 0x01 || code > 0x05:
				t.Fatalf("CONNACK return code %#x: not an MQTT 3.1.1 refusal (1-5)", code)
			case c.want != 0 && code != c.want:
				t.Fatalf("CONNACK return code %d, want %d", code, c.want)
			}
		})
	}
}

// readV3Refusal reads the server's answer to a refused 3.1.1 CONNECT: the
// CONNACK's return code, or acked false if the connection closed first.
func readV3Refusal(t *testing.T, conn interface {
	io.Reader
	SetReadDeadline(time.Time) error
}) (code byte, acked bool) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(brokertest.Patience(5 * time.Second)))
	b := make([]byte, 4)
	_, err := io.ReadFull(conn, b)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return 0, false
	case err != nil:
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("neither a CONNACK nor a close")
		}
		return 0, false // reset by the server
	}
	if b[0] != 0x20 || b[1] != 0x02 {
		t.Fatalf("first packet % x, want a 3.1.1 CONNACK (20 02 ..)", b)
	}
	return b[3], true
}
