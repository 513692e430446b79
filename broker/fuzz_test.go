package broker_test

import (
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
)

// FuzzRawPackets sends arbitrary bytes after a valid CONNECT (MQTT 5 or
// 3.1.1, by the first input byte) to a real node over TCP, and checks after
// each input that the node still accepts and authenticates a new client:
// no packet may end the process, wedge the listener or the store. Run
// `go test ./broker -run '^$' -fuzz FuzzRawPackets -fuzztime 1m`; `go test`
// runs the seeds.
func FuzzRawPackets(f *testing.F) {
	n := brokertest.Start(f, brokertest.Options{Store: brokertest.SQLite, Config: brokertestConfig(), Quiet: true})
	tok := n.User("fuzz")
	for _, seed := range [][]byte{
		{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61},                              // v5 SUBSCRIBE with no options byte
		{0x30, 0x80, 0x80, 0x40, 0x00, 0x05, 'u', '/', 'b', 'o', 'b'},                 // 1 MiB PUBLISH header
		append([]byte{0x32, 0x0b, 0x00, 0x06}, "u/fuzz\x00\x01\x00hi"...),             // QoS 1 publish to oneself
		append([]byte{0x32, 0x0f, 0x00, 0x06}, "u/fuzz\x00\x01\x04\x23\x00\x01hi"...), // topic alias property
		{0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03, 'u', '/', '#', 0x01},               // wildcard subscribe
		{0xa2, 0x04, 0x00, 0x01, 0x00, 0x00},                                          // truncated UNSUBSCRIBE
		{0xe0, 0x02, 0x95, 0xff},                                                      // DISCONNECT with bad properties
		{0x10, 0x00},                                                                  // a second CONNECT
		{0xc0, 0x00, 0xc0, 0x00},                                                      // PINGREQs
		{0x62, 0x02, 0x00, 0x01},                                                      // PUBREL for nothing
	} {
		f.Add(byte(5), seed)
		f.Add(byte(4), seed)
	}
	var seq atomic.Int64
	f.Fuzz(func(t *testing.T, version byte, data []byte) {
		id := fmt.Sprintf("fuzz/%d", seq.Add(1))
		connect := rawV5Connect(t, "fuzz", tok, id)
		if version%2 == 0 {
			connect = rawV3Connect("fuzz", tok, id)
		}
		conn, err := net.DialTimeout("tcp", n.MQTT, brokertest.Patience(5*time.Second))
		if err != nil {
			t.Fatalf("the node no longer accepts connections: %v", err)
		}
		defer conn.Close()
		if _, err := conn.Write(append(connect, data...)); err == nil {
			// Take what the node answers until it closes the connection or
			// goes quiet; what it answers is not the point here.
			conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = io.Copy(io.Discard, conn)
		}
		conn.Close()

		probe, err := net.DialTimeout("tcp", n.MQTT, brokertest.Patience(5*time.Second))
		if err != nil {
			t.Fatalf("the node no longer accepts connections: %v", err)
		}
		defer probe.Close()
		if _, err := probe.Write(rawV5Connect(t, "fuzz", tok, id+"/probe")); err != nil {
			t.Fatal(err)
		}
		probe.SetReadDeadline(time.Now().Add(brokertest.Patience(5 * time.Second)))
		typ, body, err := readPacket(probe)
		if err != nil || typ != 0x20 || len(body) < 2 || body[1] != 0 {
			t.Fatalf("after % x the node answered a good CONNECT with %#x % x, %v", data, typ, body, err)
		}
	})
}

// rawV3Connect returns an encoded MQTT 3.1.1 CONNECT with a clean session.
func rawV3Connect(user, secret, clientID string) []byte {
	var body []byte
	body = append(body, rawString("MQTT")...)
	body = append(body, 4, 0xc2, 0, 60)
	body = append(body, rawString(clientID)...)
	body = append(body, rawString(user)...)
	body = append(body, rawString(secret)...)
	return rawPacket(0x10, body)
}
