package broker_test

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/parleychat/parley/broker/brokertest"
)

// Conformance: what MQTT 5 says the server announces and answers, found
// missing by the Eclipse Paho interoperability suite (issue 10, item 9).

// TestConnackAnnouncesLimits: an MQTT 5 client learns the Maximum Packet
// Size and the Topic Alias Maximum from the CONNACK, not by being cut off.
func TestConnackAnnouncesLimits(t *testing.T) {
	cfg := brokertestConfig()
	n := brokertest.Start(t, brokertest.Options{Store: brokertest.SQLite, Config: cfg})
	c := n.MustV5("bob", n.User("bob"), "bob", brokertest.V5Options{})
	p := c.Connack.Properties
	if p == nil || p.MaximumPacketSize == nil || *p.MaximumPacketSize != uint32(cfg.MaxPayload+16<<10) {
		t.Fatalf("CONNACK Maximum Packet Size %v, want %d", p.MaximumPacketSize, cfg.MaxPayload+16<<10)
	}
	if p.TopicAliasMaximum == nil || *p.TopicAliasMaximum != 16 {
		t.Fatalf("CONNACK Topic Alias Maximum %v, want 16", p.TopicAliasMaximum)
	}
}

// TestTopicAliasOverMaximum: an alias above the announced maximum is a
// protocol error, answered with DISCONNECT 0x94; nothing is stored for it.
func TestTopicAliasOverMaximum(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Store: brokertest.SQLite, Config: brokertestConfig()})
	bt := n.User("bob")
	conn := dialRawV5(t, n, "bob", bt, "bob/alias")
	body := append(rawString("u/bob"), 3, 0x23, 0x00, 17) // properties: Topic Alias 17
	if _, err := conn.Write(rawPacket(0x30, append(body, "hi"...))); err != nil {
		t.Fatal(err)
	}
	if code := expectDisconnect(t, conn); code != 0x94 {
		t.Fatalf("DISCONNECT reason %#x, want 0x94 Topic Alias invalid", code)
	}
	serving(t, n, "alias")
}

// TestPubackCarriesNoUserProperties: a PUBACK answers a publish with user
// properties with reason 0x00 and without echoing them ([MQTT-3.4.2]; mochi
// answered 0x01 with the properties copied).
func TestPubackCarriesNoUserProperties(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Store: brokertest.SQLite, Config: brokertestConfig()})
	n.User("bob")
	alice := n.MustV5("alice", n.User("alice"), "alice", brokertest.V5Options{})
	pr, err := alice.Publish(brokertest.Ctx(t, 10*time.Second), &paho.Publish{Topic: "u/bob", QoS: 1, Payload: []byte("hi"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "trace", Value: "x"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if pr.ReasonCode != 0 {
		t.Fatalf("PUBACK reason %#x, want 0x00", pr.ReasonCode)
	}
	if pr.Properties != nil && len(pr.Properties.User) > 0 {
		t.Fatalf("PUBACK echoed user properties %v", pr.Properties.User)
	}
}

// TestPersistentSessionKeepsPlainTopics: a persistent session subscribed to
// an exact plain topic (administrators' MQTT) gets the QoS 1 messages
// published there while it was away, as one with a wildcard filter does.
func TestPersistentSessionKeepsPlainTopics(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Store: brokertest.SQLite, Config: brokertestConfig()})
	opts := brokertest.V5Options{SessionExpiry: 3600}
	for _, filter := range []string{"sensors/t1", "sensors/+"} {
		id := "watch/" + filter
		w := n.MustV5(brokertest.Admin, brokertest.AdminPassword, id, opts)
		w.Sub(t, filter, 1)
		w.Close()
		n.WaitGone(t, id)
		pub := n.MustV5(brokertest.Admin, brokertest.AdminPassword, "pub", brokertest.V5Options{})
		if _, err := pub.Publish(brokertest.Ctx(t, 10*time.Second), &paho.Publish{Topic: "sensors/t1", QoS: 1, Payload: []byte("21.5")}); err != nil {
			t.Fatal(err)
		}
		pub.Close()
		w = n.MustV5(brokertest.Admin, brokertest.AdminPassword, id, opts)
		if !w.Connack.SessionPresent {
			t.Fatalf("%s: session not present", filter)
		}
		got := w.In.WaitN(t, 1, "")
		if got[0].Topic != "sensors/t1" || string(got[0].Payload) != "21.5" {
			t.Fatalf("%s: received %s %q", filter, got[0].Topic, got[0].Payload)
		}
		w.Close()
	}
}
