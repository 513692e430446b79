package baremochi_test

// QoS 1 delivery to an MQTT 5 subscriber whose Receive Maximum is reached,
// on the patched mochi copy that bare mochi runs (third_party/PATCHES.md,
// patch 14): messages the send quota holds back are released in order,
// and nothing published later overtakes them. The first three tests are
// exact schedules: a test hook stops the broker's goroutines at the points
// where the unpatched code let a message overtake (or shrank the window),
// while raw MQTT 5 clients (mochi's own packet codec over TCP) publish and
// acknowledge one packet at a time. The last one is a stress run.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/loadtest/baremochi"
)

// wait bounds every wait for something that must happen; only a failing
// test reaches it.
const wait = 10 * time.Second

// point is a place where a broker goroutine stops until the test opens it.
type point struct {
	reached, release chan struct{}
	once             sync.Once
}

func (p *point) open() { p.once.Do(func() { close(p.release) }) }

// wait returns once a broker goroutine has stopped at p.
func (p *point) wait(t *testing.T, name string) {
	t.Helper()
	select {
	case <-p.reached:
	case <-time.After(wait):
		t.Fatalf("the broker never reached %q", name)
	}
}

// gates is a mochi hook that stops the subscriber "sub"'s packets at armed
// points and reports which messages the publisher "pub" has fanned out.
type gates struct {
	mqtt.HookBase
	published chan string // payloads, once fanned out to every subscriber

	mu     sync.Mutex
	points map[string]*point
}

func (g *gates) ID() string { return "gates" }
func (g *gates) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublished, mqtt.OnQosComplete, mqtt.OnQosPublish, mqtt.OnPacketEncode, mqtt.OnPacketRead:
		return true
	}
	return false
}

// arm makes the next goroutine to pass name stop there until the point is
// opened (at the latest when the test ends).
func (g *gates) arm(t *testing.T, name string) *point {
	p := &point{reached: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(p.open)
	g.mu.Lock()
	g.points[name] = p
	g.mu.Unlock()
	return p
}

func (g *gates) pass(name string) {
	g.mu.Lock()
	p := g.points[name]
	delete(g.points, name)
	g.mu.Unlock()
	if p != nil {
		close(p.reached)
		<-p.release
	}
}

// OnQosComplete runs on the subscriber's read goroutine after a PUBACK has
// given back its send quota, before mochi releases a held message.
func (g *gates) OnQosComplete(cl *mqtt.Client, _ packets.Packet) {
	if cl.ID == "sub" {
		g.pass("puback")
	}
}

// OnQosPublish runs on a publisher's goroutine while it fans a message out
// to the subscriber, before the message is sent or held.
func (g *gates) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if cl.ID == "sub" {
		g.pass("fan out " + string(pk.Payload))
	}
}

// OnPacketEncode runs when a packet is about to be written to the socket.
func (g *gates) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.ID == "sub" && pk.FixedHeader.Type == packets.Publish {
		g.pass("write " + string(pk.Payload))
	}
	return pk
}

// OnPacketRead runs on the subscriber's read goroutine when it has read a
// packet, before processing it (and after processing the one before).
func (g *gates) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.ID == "sub" && pk.FixedHeader.Type == packets.Pingreq {
		g.pass("read PINGREQ")
	}
	return pk, nil
}

func (g *gates) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if cl.ID == "pub" {
		g.published <- string(pk.Payload)
	}
}

// start runs a bare mochi broker with the gates hook.
func start(t *testing.T) (*baremochi.Broker, *gates) {
	t.Helper()
	b, err := baremochi.Start(baremochi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	g := &gates{published: make(chan string, 1024), points: map[string]*point{}}
	if err := b.Server().AddHook(g, nil); err != nil {
		t.Fatal(err)
	}
	return b, g
}

// client is a raw MQTT 5 client: it sends exactly the packets a test asks
// for, and acknowledges nothing by itself.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	wmu  sync.Mutex
	pid  uint16
}

func dial(t *testing.T, addr, id string, receiveMaximum uint16) *client {
	t.Helper()
	return dialSession(t, addr, id, receiveMaximum, false)
}

// dialSession connects; with resume, it resumes (or starts) a session that
// outlives the connection by a minute.
func dialSession(t *testing.T, addr, id string, receiveMaximum uint16, resume bool) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect:    packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: !resume, Keepalive: 60},
		Properties: packets.Properties{ReceiveMaximum: receiveMaximum, SessionExpiryInterval: 60, SessionExpiryIntervalFlag: resume}})
	if pk, err := c.read(); err != nil || pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != 0 {
		t.Fatalf("%s: CONNACK %+v, %v", id, pk, err)
	}
	return c
}

// send writes pks in one write. Safe for concurrent use.
func (c *client) send(pks ...packets.Packet) {
	var buf bytes.Buffer
	for _, pk := range pks {
		pk.ProtocolVersion = 5
		var err error
		switch pk.FixedHeader.Type {
		case packets.Connect:
			err = pk.ConnectEncode(&buf)
		case packets.Subscribe:
			err = pk.SubscribeEncode(&buf)
		case packets.Publish:
			err = pk.PublishEncode(&buf)
		case packets.Puback:
			err = pk.PubackEncode(&buf)
		case packets.Pingreq:
			err = pk.PingreqEncode(&buf)
		default:
			err = fmt.Errorf("cannot send packet type %d", pk.FixedHeader.Type)
		}
		if err != nil {
			c.t.Error(err)
			return
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		c.t.Error(err)
	}
}

// read reads one packet.
func (c *client) read() (packets.Packet, error) { return c.readWithin(wait) }

// readWithin reads one packet arriving within d.
func (c *client) readWithin(d time.Duration) (packets.Packet, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	hb, err := c.r.ReadByte()
	if err != nil {
		return packets.Packet{}, err
	}
	pk := packets.Packet{ProtocolVersion: 5}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return pk, err
	}
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	}
	return pk, err
}

// next returns the next PUBLISH, skipping PINGRESPs.
func (c *client) next() packets.Packet {
	c.t.Helper()
	return c.nextWithin(wait)
}

// nextWithin returns the next PUBLISH, which must arrive within d.
func (c *client) nextWithin(d time.Duration) packets.Packet {
	c.t.Helper()
	for {
		pk, err := c.readWithin(d)
		if err != nil {
			c.t.Fatalf("waiting for a message: %v", err)
		}
		switch pk.FixedHeader.Type {
		case packets.Publish:
			return pk
		case packets.Pingresp:
		default:
			c.t.Fatalf("waiting for a message: got packet type %d (%+v)", pk.FixedHeader.Type, pk)
		}
	}
}

// expect reads the next PUBLISH and wants payload want.
func (c *client) expect(want string) packets.Packet {
	c.t.Helper()
	return c.expectWithin(want, wait)
}

// expectWithin wants the next PUBLISH to carry payload want and to arrive
// within d.
func (c *client) expectWithin(want string, d time.Duration) packets.Packet {
	c.t.Helper()
	pk := c.nextWithin(d)
	if got := string(pk.Payload); got != want {
		c.t.Fatalf("received message %q, want %q (out of order, repeated or lost)", got, want)
	}
	if pk.FixedHeader.Qos != 1 {
		c.t.Fatalf("message %q has QoS %d", pk.Payload, pk.FixedHeader.Qos)
	}
	return pk
}

func (c *client) subscribe(filter string) {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: filter, Qos: 1}}})
	if pk, err := c.read(); err != nil || pk.FixedHeader.Type != packets.Suback || len(pk.ReasonCodes) != 1 || pk.ReasonCodes[0] != 1 {
		c.t.Fatalf("SUBACK %+v, %v", pk, err)
	}
}

func puback(id uint16) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id}
}

var pingreq = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}

// publish sends one QoS 1 message and reads its PUBACK (which mochi writes
// before the fan-out).
func (c *client) publish(topic, payload string) {
	c.t.Helper()
	c.pid++
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: c.pid,
		TopicName: topic, Payload: []byte(payload)})
	if pk, err := c.read(); err != nil || pk.FixedHeader.Type != packets.Puback || pk.PacketID != c.pid {
		c.t.Fatalf("PUBACK for %q: %+v, %v", payload, pk, err)
	}
}

// published waits until the publisher's message payload has been fanned out.
func (g *gates) fannedOut(t *testing.T, payload string) {
	t.Helper()
	select {
	case got := <-g.published:
		if got != payload {
			t.Fatalf("fanned out %q, want %q", got, payload)
		}
	case <-time.After(wait):
		t.Fatalf("message %q was never fanned out", payload)
	}
}

// publishAll publishes each payload and waits for its fan-out.
func publishAll(t *testing.T, pub *client, g *gates, topic string, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		pub.publish(topic, p)
		g.fannedOut(t, p)
	}
}

// finish acknowledges ids, then publishes a last message, which must be the
// next one the subscriber receives: nothing was sent twice.
func finish(t *testing.T, sub, pub *client, g *gates, topic, last string, ids ...uint16) {
	t.Helper()
	for _, id := range ids {
		sub.send(puback(id))
	}
	publishAll(t, pub, g, topic, last)
	sub.send(puback(sub.expect(last).PacketID))
}

// A PUBACK gives back send quota on the subscriber's read goroutine; before
// that goroutine released the held message, a publisher's next message saw
// the free quota and was sent at once, ahead of it.
func TestSendQuotaPubackDoesNotLetNewMessageOvertake(t *testing.T) {
	b, g := start(t)
	sub := dial(t, b.Addr(), "sub", 2)
	sub.subscribe("q/1")
	pub := dial(t, b.Addr(), "pub", 0)

	publishAll(t, pub, g, "q/1", "1", "2")
	m1, m2 := sub.expect("1"), sub.expect("2")
	publishAll(t, pub, g, "q/1", "3") // held: the window (2) is full

	p := g.arm(t, "puback")
	sub.send(puback(m1.PacketID))
	p.wait(t, "puback") // quota given back, 3 not released yet
	publishAll(t, pub, g, "q/1", "4")
	p.open()

	m3 := sub.expect("3")
	sub.send(puback(m2.PacketID))
	m4 := sub.expect("4")
	finish(t, sub, pub, g, "q/1", "5", m3.PacketID, m4.PacketID)
}

// mochi released a held message by writing it to the socket itself, while
// the messages sent normally wait in the client's outbound queue for its
// write loop: a released message overtook one queued (or being written).
func TestSendQuotaReleasedMessageDoesNotOvertakeQueued(t *testing.T) {
	b, g := start(t)
	sub := dial(t, b.Addr(), "sub", 2)
	sub.subscribe("q/2")
	pub := dial(t, b.Addr(), "pub", 0)

	publishAll(t, pub, g, "q/2", "1", "2")
	m1, m2 := sub.expect("1"), sub.expect("2")
	sub.send(puback(m1.PacketID), pingreq)
	if pk, err := sub.read(); err != nil || pk.FixedHeader.Type != packets.Pingresp {
		t.Fatalf("PINGRESP: %+v, %v", pk, err) // the PUBACK has been processed: one slot free
	}

	w := g.arm(t, "write 3")
	publishAll(t, pub, g, "q/2", "3") // sent: queued for the write loop
	w.wait(t, "write 3")              // the write loop is writing 3
	publishAll(t, pub, g, "q/2", "4") // held: the window is full
	sub.send(puback(m2.PacketID))     // frees a slot for 4
	cl, ok := b.Server().Clients.Get("sub")
	if !ok {
		t.Fatal("no client sub")
	}
	testwait.Until(t, wait, "message 4 released", func() bool { return !held(cl, "4") })
	w.open()

	m3 := sub.expect("3")
	m4 := sub.expect("4")
	finish(t, sub, pub, g, "q/2", "5", m3.PacketID, m4.PacketID)
}

// held says whether the message with payload is held back by cl's send
// quota (mochi marks it with Expiry -1).
func held(cl *mqtt.Client, payload string) bool {
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if string(pk.Payload) == payload {
			return pk.Expiry < 0
		}
	}
	return false
}

// A publisher decided to hold a message on a quota it had read before a
// PUBACK gave one back, and took that quota as well: the message waited
// although the window had room, and the window stayed one smaller for good.
func TestSendQuotaPubackDuringFanOutKeepsTheWindow(t *testing.T) {
	b, g := start(t)
	sub := dial(t, b.Addr(), "sub", 2)
	sub.subscribe("q/3")
	pub := dial(t, b.Addr(), "pub", 0)

	publishAll(t, pub, g, "q/3", "1", "2")
	m1, m2 := sub.expect("1"), sub.expect("2")

	f := g.arm(t, "fan out 3")
	pub.publish("q/3", "3")
	f.wait(t, "fan out 3") // the window is full as 3 is fanned out
	r := g.arm(t, "read PINGREQ")
	sub.send(puback(m1.PacketID), pingreq)
	r.wait(t, "read PINGREQ") // the PUBACK is processed; the read goroutine waits
	f.open()
	g.fannedOut(t, "3")
	// One message in flight, the window is 2: 3 goes out at once (the read
	// goroutine, which released held messages, is still waiting).
	m3 := sub.expectWithin("3", 3*time.Second)
	r.open()

	sub.send(puback(m2.PacketID))
	publishAll(t, pub, g, "q/3", "4")
	m4 := sub.expect("4") // 3 and 4 in flight: the window is still 2
	finish(t, sub, pub, g, "q/3", "5", m3.PacketID, m4.PacketID)
}

// A resumed session resent the messages the quota had held back (never
// sent) with the ones in flight, and released them again later: each
// arrived twice.
func TestSendQuotaResumedSession(t *testing.T) {
	b, g := start(t)
	sub := dialSession(t, b.Addr(), "sub", 2, true)
	sub.subscribe("q/4")
	pub := dial(t, b.Addr(), "pub", 0)

	publishAll(t, pub, g, "q/4", "1", "2", "3", "4") // 3 and 4 held
	sub.expect("1")
	sub.expect("2")
	_ = sub.conn.Close()

	sub = dialSession(t, b.Addr(), "sub", 2, true)
	m1, m2 := sub.expect("1"), sub.expect("2") // resent
	if !m1.FixedHeader.Dup || !m2.FixedHeader.Dup {
		t.Errorf("resent messages without DUP: %v, %v", m1.FixedHeader.Dup, m2.FixedHeader.Dup)
	}
	sub.send(puback(m1.PacketID), puback(m2.PacketID))
	m3, m4 := sub.expect("3"), sub.expect("4")
	if m3.FixedHeader.Dup || m4.FixedHeader.Dup {
		t.Errorf("messages never sent before marked DUP: %v, %v", m3.FixedHeader.Dup, m4.FixedHeader.Dup)
	}
	finish(t, sub, pub, g, "q/4", "5", m3.PacketID, m4.PacketID)
}

// While a resumed session's messages were being resent (written to the
// socket one by one after the CONNACK), a new message went out through the
// outbound queue, ahead of those not resent yet; with patch 14 alone, the
// held ones would have been released ahead of them too.
func TestSendQuotaResumedSessionNewMessageWaits(t *testing.T) {
	b, g := start(t)
	sub := dialSession(t, b.Addr(), "sub", 2, true)
	sub.subscribe("q/5")
	pub := dial(t, b.Addr(), "pub", 0)

	publishAll(t, pub, g, "q/5", "1", "2", "3") // 3 held
	sub.expect("1")
	sub.expect("2")
	_ = sub.conn.Close()

	f := g.arm(t, "fan out 1") // mochi calls OnQosPublish before resending each message
	sub = dialSession(t, b.Addr(), "sub", 2, true)
	f.wait(t, "resending 1")
	publishAll(t, pub, g, "q/5", "4")
	f.open()

	m1, m2 := sub.expect("1"), sub.expect("2")
	sub.send(puback(m1.PacketID))
	m3 := sub.expect("3")
	sub.send(puback(m2.PacketID))
	m4 := sub.expect("4")
	finish(t, sub, pub, g, "q/5", "5", m3.PacketID, m4.PacketID)
}

// Two publishers, one topic, a subscriber with a window of 2 that
// acknowledges late and in bursts: each publisher's messages arrive in
// order, each exactly once.
func TestSendQuotaStress(t *testing.T) {
	const perPublisher = 200
	b, err := baremochi.Start(baremochi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	sub := dial(t, b.Addr(), "sub", 2)
	sub.subscribe("q/s")

	acks, acked := make(chan uint16, 2*perPublisher), make(chan struct{})
	go func() { // acknowledges after a while, sometimes several at once
		defer close(acked)
		var batch []packets.Packet
		for id := range acks {
			batch = append(batch, puback(id))
			if len(acks) > 0 && rand.IntN(2) == 0 {
				continue
			}
			// A random pause is the point: acknowledgements arrive at
			// random moments against the publishers, as a real
			// subscriber's do; nothing is waited for here.
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			sub.send(batch...)
			batch = batch[:0]
		}
	}()
	defer func() { close(acks); <-acked }()

	var wg sync.WaitGroup
	for p := range 2 {
		pub := dial(t, b.Addr(), fmt.Sprintf("pub%d", p), 0)
		wg.Add(1)
		go func() { // reads the PUBACKs
			defer wg.Done()
			for range perPublisher {
				if pk, err := pub.read(); err != nil || pk.FixedHeader.Type != packets.Puback {
					t.Errorf("pub%d: %+v, %v", p, pk, err)
					return
				}
			}
		}()
		wg.Add(1)
		go func() { // publishes without waiting for PUBACKs
			defer wg.Done()
			for n := range perPublisher {
				pub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
					PacketID: uint16(n + 1), TopicName: "q/s", Payload: fmt.Appendf(nil, "%d %d", p, n)})
			}
		}()
	}

	var seen [2][perPublisher]bool
	last := [2]int{-1, -1}
	var reordered, duplicates []string
	for range 2 * perPublisher {
		pk := sub.next()
		acks <- pk.PacketID
		var p, n int
		if _, err := fmt.Sscanf(string(pk.Payload), "%d %d", &p, &n); err != nil || p < 0 || p > 1 || n < 0 || n >= perPublisher {
			t.Fatalf("payload %q", pk.Payload)
		}
		switch {
		case seen[p][n]:
			duplicates = append(duplicates, string(pk.Payload))
		case n < last[p]:
			reordered = append(reordered, fmt.Sprintf("%s after %d %d", pk.Payload, p, last[p]))
		}
		seen[p][n], last[p] = true, max(last[p], n)
	}
	wg.Wait()
	if len(reordered) > 0 || len(duplicates) > 0 {
		t.Errorf("out of order: %d [%s]; duplicates: %d [%s]", len(reordered), strings.Join(first(reordered), ", "),
			len(duplicates), strings.Join(first(duplicates), ", "))
	}
}

func first(s []string) []string { return s[:min(len(s), 5)] }
