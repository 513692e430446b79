package broker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/protocol"
)

// TestBurstToOneSubscriber: several MQTT 5 publishers burst QoS 1 messages
// into one inbox without waiting for PUBACKs, and every one arrives. This is
// the traffic under which mochi v2.7.9 can deadlock a subscriber whose send
// quota it tracks (see Inbox.OnSessionEstablished; the load tester hit it
// at 20,000 msg/s); the race is narrow, so passing here does not prove it
// gone, but a regression that reintroduces a hang or a loss shows here.
func TestBurstToOneSubscriber(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Store: brokertest.SQLite})
	bt := n.User("bob")
	bob := n.MustV5("bob", bt, "bob", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	const senders, each = 4, 500
	var wg sync.WaitGroup
	for i := 0; i < senders; i++ {
		id := fmt.Sprintf("s%d", i)
		c := n.MustV5(id, n.User(id), id, brokertest.V5Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			var inner sync.WaitGroup
			for j := 0; j < each; j++ {
				inner.Add(1)
				go func() {
					defer inner.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if _, err := c.Publish(ctx, &paho.Publish{Topic: "u/bob", QoS: 1, Payload: []byte("x")}); err != nil {
						t.Errorf("publish: %v", err)
					}
				}()
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	got := bob.In.WaitN(t, senders*each, protocol.TypeMsg)
	if len(got) != senders*each {
		t.Fatalf("bob received %d, want %d", len(got), senders*each)
	}
}
