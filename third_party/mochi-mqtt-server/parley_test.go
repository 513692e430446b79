package mqtt

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// panicHook panics while a packet is being read, as a decoder bug would.
type panicHook struct{ HookBase }

func (h *panicHook) ID() string           { return "panic" }
func (h *panicHook) Provides(b byte) bool { return b == OnPacketRead }
func (h *panicHook) OnPacketRead(*Client, packets.Packet) (packets.Packet, error) {
	panic("boom")
}

// Parley patch 2: a panic while reading a packet ends the client with a
// malformed-packet error instead of the process.
func TestReadPacketRecoversPanic(t *testing.T) {
	cl, r, _ := newTestClient()
	defer cl.Stop(errClientStop)
	if err := cl.ops.hooks.Add(new(panicHook), nil); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = r.Write([]byte{0xc0, 0x00}) }() // PINGREQ
	fh := new(packets.FixedHeader)
	if err := cl.ReadFixedHeader(fh); err != nil {
		t.Fatal(err)
	}
	_, err := cl.ReadPacket(fh)
	if !errors.Is(err, packets.ErrMalformedPacket) {
		t.Fatalf("err = %v, want %v", err, packets.ErrMalformedPacket)
	}
}

// Parley patch 3: NextPacketID does not wait for the client's lock, which a
// socket write to a subscriber that stopped reading holds.
func TestNextPacketIDWhileWriting(t *testing.T) {
	cl, _, _ := newTestClient()
	defer cl.Stop(errClientStop)
	cl.Lock() // as WritePacket does around a blocked socket write
	defer cl.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := cl.NextPacketID()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // a bound on a hang, not a timing
		t.Fatal("NextPacketID waited for the client's write lock")
	}
}

// Parley patch 4: readers that took a read lock twice deadlocked against a
// writer arriving in between. Many rounds of readers and writers together
// must all finish.
func TestNoRecursiveReadLocks(t *testing.T) {
	cls := NewClients()
	in := NewInflights()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprint(i % 8)
				cls.Add(&Client{ID: id, Net: ClientConnection{Listener: "l"}})
				cls.Delete(id)
				in.Set(packets.Packet{PacketID: uint16(i%8 + 1), Expiry: -1})
				in.Delete(uint16(i%8 + 1))
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		for i := 0; i < 20000; i++ {
			cls.GetByListener("l")
			in.NextImmediate()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("readers deadlocked against writers")
	}
	close(stop)
	wg.Wait()
}

// Parley patch 6: 3.1.1 clients get 3.1.1 CONNACK return codes.
func TestV3ConnackCode(t *testing.T) {
	for name, c := range map[string]struct{ in, want packets.Code }{
		"bad credentials, own reason": {packets.Code{Code: 0x86, Reason: "no"}, packets.Err3NotAuthorized},
		"client id not valid":         {packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid},
		"protocol error":              {packets.ErrProtocolViolation, packets.Err3ServerUnavailable},
		"unspecified":                 {packets.ErrUnspecifiedError, packets.Err3ServerUnavailable},
		"quota exceeded":              {packets.ErrQuotaExceeded, packets.Err3ServerUnavailable},
		"not authorized":              {packets.ErrNotAuthorized, packets.Err3NotAuthorized},
		"server busy":                 {packets.ErrServerBusy, packets.Err3ServerUnavailable},
		"already v3":                  {packets.Err3ServerUnavailable, packets.Err3ServerUnavailable},
	} {
		if got := packets.V3ConnackCode(c.in); got.Code != c.want.Code {
			t.Errorf("%s: %#x -> %#x, want %#x", name, c.in.Code, got.Code, c.want.Code)
		}
	}
}

// Parley patch 15: a CONNECT whose protocol level the server does not speak
// is refused with the 3.1.1 return code 0x01 [MQTT-3.1.2-2], never 0x82;
// only an MQTT 5 client's is answered as MQTT 5 (0x84).
func TestConnectUnsupportedProtocolLevel(t *testing.T) {
	for name, c := range map[string]struct {
		name    string
		level   byte
		want    byte // the MQTT 5 code; 3.1.1 clients get it through V3ConnackCode
		version byte // the protocol the CONNACK is written in
	}{
		"level 6":          {"MQTT", 6, 0x84, 4},
		"level 3 as MQTT":  {"MQTT", 3, 0x84, 4},
		"level 0":          {"MQTT", 0, 0x84, 4},
		"MQIsdp level 4":   {"MQIsdp", 4, 0x84, 4},
		"MQIsdp level 5":   {"MQIsdp", 5, 0x84, 5},
		"MQTT 3.1 (valid)": {"MQIsdp", 3, 0x00, 3},
	} {
		t.Run(name, func(t *testing.T) {
			s := newServer()
			cl, _, _ := newTestClient()
			defer cl.Stop(errClientStop)
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: c.level,
				Connect: packets.ConnectParams{ProtocolName: []byte(c.name), Clean: true, ClientIdentifier: "c"}}
			cl.ParseConnect("tcp", pk)
			code := s.validateConnect(cl, pk)
			if code.Code != c.want {
				t.Fatalf("code %#x, want %#x", code.Code, c.want)
			}
			if c.want != 0 && cl.Properties.ProtocolVersion != c.version {
				t.Fatalf("answered as protocol level %d, want %d", cl.Properties.ProtocolVersion, c.version)
			}
			if c.want != 0 && cl.Properties.ProtocolVersion < 5 && packets.V3ConnackCode(code).Code != 0x01 {
				t.Fatalf("3.1.1 return code %#x, want 0x01", packets.V3ConnackCode(code).Code)
			}
		})
	}
}

// Parley patch 7: CONNACK announces Maximum Packet Size and Topic Alias
// Maximum to MQTT 5 clients.
func TestConnackAnnouncesLimits(t *testing.T) {
	s := newServer()
	s.Options.Capabilities.MaximumPacketSize = 81920
	s.Options.Capabilities.TopicAliasMaximum = 16
	cl, r, w := newTestClient()
	cl.Properties.ProtocolVersion = 5
	defer cl.Stop(errClientStop)
	go func() {
		if err := s.SendConnack(cl, packets.CodeSuccess, false, nil); err != nil {
			t.Error(err)
		}
		w.Close()
	}()
	fh := new(packets.FixedHeader)
	buf, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Decode(buf[0]); err != nil || fh.Type != packets.Connack {
		t.Fatalf("not a CONNACK: % x", buf)
	}
	pk := packets.Packet{ProtocolVersion: 5, FixedHeader: *fh}
	if err := pk.ConnackDecode(buf[2:]); err != nil {
		t.Fatal(err)
	}
	if pk.Properties.MaximumPacketSize != 81920 || pk.Properties.TopicAliasMaximum != 16 {
		t.Fatalf("CONNACK properties %+v, want Maximum Packet Size 81920 and Topic Alias Maximum 16", pk.Properties)
	}
}

// Parley patch 9: an alias the client never set resolves to no topic and
// is not stored as one.
func TestInboundAliasUnknown(t *testing.T) {
	a := NewInboundTopicAliases(16)
	if got := a.Set(1, ""); got != "" {
		t.Fatalf("unknown alias resolved to %q", got)
	}
	if got := a.Set(1, "a/b"); got != "a/b" {
		t.Fatalf("setting alias 1: %q", got)
	}
	if got := a.Set(1, ""); got != "a/b" {
		t.Fatalf("alias 1 after setting it: %q", got)
	}
}

// Parley patch 10: GetAll returns packets in the order they entered,
// whatever their packet ids and however many share a second.
func TestInflightKeepsOrder(t *testing.T) {
	in := NewInflights()
	ids := []uint16{500, 3, 65000, 7, 42}
	for _, id := range ids {
		in.Set(packets.Packet{PacketID: id, Created: 1700000000, Expiry: -1})
	}
	in.Set(packets.Packet{PacketID: 3, Created: 1700000000, Expiry: -1}) // an update keeps its place
	for n, pk := range in.GetAll(true) {
		if pk.PacketID != ids[n] {
			t.Fatalf("GetAll[%d] = %d, want %d (order %v)", n, pk.PacketID, ids[n], ids)
		}
	}
	if next, ok := in.NextImmediate(); !ok || next.PacketID != 500 {
		t.Fatalf("NextImmediate = %d, want 500", next.PacketID)
	}
}

// Parley patch 12: a SUBSCRIBE with more filters than the server takes is
// refused whole, before any hook or ACL check; 3.1.1 gets 0x80.
func TestMaximumSubscriptionFilters(t *testing.T) {
	for _, version := range []byte{4, 5} {
		s := newServer()
		s.Options.Capabilities.MaximumSubscriptionFilters = 2
		cl, r, w := newTestClient()
		cl.Properties.ProtocolVersion = version
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 7, ProtocolVersion: version,
			Filters: packets.Subscriptions{{Filter: "a"}, {Filter: "b"}, {Filter: "c"}}}
		go func() {
			if err := s.processSubscribe(cl, pk); err != nil {
				t.Error(err)
			}
			w.Close()
		}()
		buf, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		fh := new(packets.FixedHeader)
		if err := fh.Decode(buf[0]); err != nil || fh.Type != packets.Suback {
			t.Fatalf("v%d: not a SUBACK: % x", version, buf)
		}
		ack := packets.Packet{ProtocolVersion: version, FixedHeader: *fh}
		if err := ack.SubackDecode(buf[2:]); err != nil {
			t.Fatal(err)
		}
		want := byte(0x97)
		if version < 5 {
			want = 0x80
		}
		if len(ack.ReasonCodes) != 3 || ack.ReasonCodes[0] != want || ack.ReasonCodes[2] != want {
			t.Fatalf("v%d: SUBACK codes % x, want three %#x", version, ack.ReasonCodes, want)
		}
		if n := len(s.Topics.Subscribers("a").Subscriptions); n != 0 {
			t.Fatalf("v%d: %d subscriptions made", version, n)
		}
		cl.Stop(errClientStop)
	}
}

// publishedHook records OnPublished.
type publishedHook struct {
	HookBase
	published chan string
}

func (h *publishedHook) ID() string { return "published" }
func (h *publishedHook) Provides(b byte) bool {
	return b == OnPublished
}
func (h *publishedHook) OnPublished(_ *Client, pk packets.Packet) { h.published <- pk.TopicName }

// Parley patch 13: a QoS 1 message accepted by OnPublish is delivered
// (OnPublished runs) even when its PUBACK cannot be written: the sender is
// going, and what a hook stored must still reach its subscribers.
func TestPublishedWhenPubackFails(t *testing.T) {
	s := newServer()
	h := &publishedHook{published: make(chan string, 1)}
	if err := s.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	cl, r, w := newTestClient()
	cl.ops.hooks = s.hooks
	r.Close() // the sender's side is gone: the PUBACK write fails
	w.Close()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b", PacketID: 7,
		Payload: []byte("x")}
	if err := s.processPublish(cl, pk); err == nil {
		t.Fatal("the PUBACK write did not fail: the test proves nothing")
	}
	select {
	case topic := <-h.published:
		if topic != "a/b" {
			t.Fatalf("OnPublished for %q", topic)
		}
	default:
		t.Fatal("OnPublished did not run: the accepted message is never delivered")
	}
}

// Parley patch 14: the inflight map counts the packets the send quota holds
// back; takeHeld hands them out oldest first, marked as sent and still in
// flight (patch 11); hold puts back those that could not be queued, in
// their place; Delete and Clone keep the count.
func TestInflightHeld(t *testing.T) {
	in := NewInflights()
	in.Set(packets.Packet{PacketID: 9}) // in flight, not held
	for _, id := range []uint16{5, 2, 7, 4} {
		in.Set(packets.Packet{PacketID: id, Expiry: -1})
	}
	if n := in.heldLen(); n != 4 {
		t.Fatalf("held = %d, want 4", n)
	}
	in.Set(packets.Packet{PacketID: 2, Expiry: -1}) // an update is no new one
	got := in.takeHeld(3)
	if len(got) != 3 || got[0].PacketID != 5 || got[1].PacketID != 2 || got[2].PacketID != 7 || got[0].Expiry != 0 {
		t.Fatalf("takeHeld(3) = %+v, want 5, 2, 7 marked sent", got)
	}
	if pk, ok := in.Get(2); !ok || pk.Expiry != 0 {
		t.Fatalf("a packet taken is not in flight: %+v, %v", pk, ok)
	}
	if n := in.heldLen(); n != 1 {
		t.Fatalf("held = %d after taking 3, want 1", n)
	}
	in.hold(got[1:]) // 2 and 7 could not be queued
	if next := in.takeHeld(1); len(next) != 1 || next[0].PacketID != 2 {
		t.Fatalf("takeHeld(1) after hold = %+v, want 2 (its place kept)", next)
	}
	in.Delete(7)
	c := in.Clone()
	if n, m := in.heldLen(), c.heldLen(); n != 1 || m != 1 {
		t.Fatalf("held = %d, cloned %d, want 1 (packet 4)", n, m)
	}
	if got := c.takeHeld(10); len(got) != 1 || got[0].PacketID != 4 {
		t.Fatalf("clone's takeHeld = %+v, want 4", got)
	}
	if got := in.takeHeld(0); got != nil {
		t.Fatalf("takeHeld(0) = %+v", got)
	}
}

// Parley patch 14: a resumed session resends what was sent, taking send
// quota for it, but not what the quota held back (never sent): that is
// released afterwards, in order, as the quota allows.
func TestResendSkipsHeld(t *testing.T) {
	cl, r, w := newTestClient()
	sent := *packets.TPacketData[packets.Publish].Get(packets.TPublishQos1Dup).Packet
	heldBack := sent
	heldBack.PacketID, heldBack.Expiry = 8, -1
	cl.State.Inflight.Set(sent)
	cl.State.Inflight.Set(heldBack)
	go func() {
		if err := cl.ResendInflightMessages(true); err != nil {
			t.Error(err)
		}
		_ = w.Close()
	}()
	buf, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := packets.TPacketData[packets.Publish].Get(packets.TPublishQos1Dup).RawBytes; string(buf) != string(want) {
		t.Fatalf("resent % x, want only the packet sent before: % x", buf, want)
	}
	if q := cl.State.Inflight.sendQuota; q != 4 {
		t.Fatalf("send quota %d after resending one packet, want 4", q)
	}
	if n := cl.State.Inflight.heldLen(); n != 1 {
		t.Fatalf("held = %d, want 1", n)
	}
}
