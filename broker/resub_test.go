package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/protocol"
)

// TestResubscribeOnResumedSession: a client that resumes its session and
// subscribes again (mosquitto_sub -c does) is granted, and gets what it
// missed once.
func TestResubscribeOnResumedSession(t *testing.T) { forEachStore(t, testResubscribeOnResumedSession) }

func testResubscribeOnResumedSession(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	bob := n.MustV5("bob", bt, "bob/laptop", persistent)
	bob.Sub(t, "u/bob", 1)
	bob.Close()
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Pub(t, "u/bob", "while away")
	bob = n.MustV5("bob", bt, "bob/laptop", persistent)
	if rc := bob.Sub(t, "u/bob", 1); rc[0] != 1 {
		t.Fatalf("subscribing again on a resumed session: reason %#x", rc[0])
	}
	alice.Pub(t, "u/bob", "live")
	bob.In.WaitN(t, 2, protocol.TypeMsg)
	// A repeat (from a second catch-up) would come before a later live
	// entry: deliveries to one connection keep their order.
	alice.Pub(t, "u/bob", "barrier")
	bob.In.WaitFor(t, 10*time.Second, "the barrier", func(ms []brokertest.Msg) bool {
		return len(ms) > 0 && ms[len(ms)-1].Header(t).Seq == 3
	})
	if got := msgs(t, bob.In.All()); len(got) != 3 || got[0].Seq != 1 || got[1].Seq != 2 || got[2].Seq != 3 {
		t.Fatalf("received %+v, want seqs 1, 2, 3 once each", got)
	}
}

// TestWillCannotSpoofInbox: a last will on someone's inbox is not delivered
// (it would bypass stamping); a will on one's own presence is.
func TestWillCannotSpoofInbox(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	at, bt := n.User("alice"), n.User("bob")
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	admin := n.MustV5(brokertest.Admin, brokertest.AdminPassword, "watch", brokertest.V5Options{})
	admin.Sub(t, "p/alice", 1)
	for _, topic := range []string{"u/bob", "p/alice"} {
		alice := n.MustV5("alice", at, "alice/"+strings.ReplaceAll(topic, "/", "-"), brokertest.V5Options{
			Will: &paho.WillMessage{Topic: topic, QoS: 1, Payload: []byte(`{"from":"mallory","body":{"text":"spoof"}}`)}})
		alice.Drop()
		n.WaitGone(t, "alice/"+strings.ReplaceAll(topic, "/", "-"))
	}
	admin.In.WaitN(t, 1, "") // alice's own presence will arrives
	// Both wills were handled (the connections are gone); a DM sent now
	// arrives after anything they could have put in bob's inbox.
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Pub(t, "u/bob", "barrier")
	bob.In.WaitN(t, 1, protocol.TypeMsg)
	if got := bob.In.All(); len(got) != 1 {
		t.Fatalf("a will reached bob's inbox: %s", got[0].Payload)
	}
}
