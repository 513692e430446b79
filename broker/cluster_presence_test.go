package broker_test

import (
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/broker"
	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/push/pushtest"
)

// lookupOne returns a user's presence from GET /v1/presence on node n.
func lookupOne(t *testing.T, n *brokertest.Node, token, user string) protocol.Presence {
	t.Helper()
	ps := lookup(t, n, token, user)
	if len(ps) != 1 {
		t.Fatalf("GET /v1/presence on %s: %+v", n.Name, ps)
	}
	return ps[0]
}

// TestClusterPresence: alice's phone on node 1 and laptop on node 2, bob
// watching p/alice on node 3. alice is online once, stays online while one
// device is left anywhere (no flap), and goes offline with last_seen when
// the last one leaves. GET /v1/presence answers the same on every node.
func TestClusterPresence(t *testing.T) {
	c := brokertest.StartCluster(t, 3, brokertest.Options{})
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	at, bt := n1.User("alice"), n1.User("bob")
	if code := n1.HTTPDo("PUT", "/v1/me/presence", at, map[string]string{"privacy": "everyone"}, nil); code != 200 {
		t.Fatalf("privacy: %d", code)
	}
	bob := n3.MustV5("bob", bt, "bob/phone", brokertest.V5Options{})
	bob.Sub(t, "p/alice", 1)
	if p := waitPresence(t, bob.In, "p/alice", 1); p.Status != "offline" {
		t.Fatalf("first state %+v, want offline", p)
	}
	phone := n1.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	on := waitPresence(t, bob.In, "p/alice", 2)
	if on.Status != "online" || on.TS == 0 {
		t.Fatalf("after alice's phone connected to node 1: %+v", on)
	}
	laptop := n2.MustV5("alice", at, "alice/laptop", brokertest.V5Options{})
	laptop.Sub(t, "u/alice", 1) // counted once its SUBACK is back (mochi counts after CONNACK)
	for _, n := range c.Nodes {
		if p := lookupOne(t, n, bt, "alice"); p.Status != "online" || p.TS != on.TS {
			t.Fatalf("GET /v1/presence on %s: %+v, want online since %d", n.Name, p, on.TS)
		}
	}
	// The phone leaves; the laptop on node 2 keeps alice online.
	phone.Close()
	n1.WaitGone(t, "alice/phone")
	if p := lookupOne(t, n3, bt, "alice"); p.Status != "online" {
		t.Fatalf("with the laptop connected to node 2: %+v", p)
	}
	// away on the laptop: the one device left decides.
	laptop.Pub(t, "p/alice", `{"status":"away"}`)
	if p := waitPresence(t, bob.In, "p/alice", 3); p.Status != "away" {
		t.Fatalf("after away: %+v", p)
	}
	before := time.Now().UnixMilli()
	laptop.Close()
	off := waitPresence(t, bob.In, "p/alice", 4)
	if off.Status != "offline" || off.LastSeen < before {
		t.Fatalf("after the last device left: %+v, want offline with last_seen >= %d", off, before)
	}
	if got := statuses(presences(t, bob.In.All(), "p/alice")); !slices.Equal(got, []string{"offline", "online", "away", "offline"}) {
		t.Fatalf("bob saw %v: alice must not flap", got)
	}
	// A subscriber on node 1, which retained alice's old state (online: it
	// was not watching her since), gets the cluster's. (Its last_seen is
	// the store's, which node 2 writes within presence flush: it may be
	// the phone's departure, a moment earlier.)
	carol := n1.MustV5(brokertest.Admin, brokertest.AdminPassword, "admin/p", brokertest.V5Options{})
	carol.Sub(t, "p/alice", 1)
	if p := waitPresence(t, carol.In, "p/alice", 1); p.Status != "offline" || p.LastSeen < on.TS {
		t.Fatalf("p/alice on node 1: %+v", p)
	}
}

// TestClusterNodeDeath: node 2 is cut off from NATS (as if it died: no
// heartbeat). alice's only device was on it: within the node timeout the
// others show her offline, with a last_seen. Node 2 back, its users count
// again.
func TestClusterNodeDeath(t *testing.T) {
	o := brokertest.Options{Config: broker.Config{Cluster: broker.ClusterConfig{
		Heartbeat: 100 * time.Millisecond, NodeTimeout: 600 * time.Millisecond}}}
	c := brokertest.StartClusterVia(t, 2, o, []int{1})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	at, bt := n1.User("alice"), n1.User("bob")
	if code := n1.HTTPDo("PUT", "/v1/me/presence", at, map[string]string{"privacy": "everyone"}, nil); code != 200 {
		t.Fatalf("privacy: %d", code)
	}
	bob := n1.MustV5("bob", bt, "bob/phone", brokertest.V5Options{})
	bob.Sub(t, "p/alice", 1)
	waitPresence(t, bob.In, "p/alice", 1)
	n2.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	if p := waitPresence(t, bob.In, "p/alice", 2); p.Status != "online" {
		t.Fatalf("alice on node 2: %+v", p)
	}
	cut := time.Now().UnixMilli()
	c.Proxies[1].Cut()
	off := waitPresence(t, bob.In, "p/alice", 3)
	if off.Status != "offline" || off.LastSeen == 0 || off.LastSeen > cut+1000 {
		t.Fatalf("alice after node 2 went silent: %+v, want offline last seen about %d", off, cut)
	}
	if p := lookupOne(t, n1, bt, "alice"); p.Status != "offline" {
		t.Fatalf("GET /v1/presence on node 1: %+v", p)
	}
	// GET /v1/cluster on node 1 shows node 2 dead; its bus up.
	var view struct {
		Clustered bool
		Node      string
		Bus       struct{ Connected bool }
		Nodes     []struct {
			Node        string
			Alive       bool
			Connections int64
		}
	}
	if code := n1.AdminGet("/v1/cluster", &view); code != 200 || !view.Clustered || view.Node != "n1" ||
		!view.Bus.Connected || len(view.Nodes) != 2 || view.Nodes[0].Node != "n1" || !view.Nodes[0].Alive ||
		view.Nodes[0].Connections != 1 || view.Nodes[1].Node != "n2" || view.Nodes[1].Alive {
		t.Fatalf("GET /v1/cluster on node 1 with node 2 cut off: %d %+v", code, view)
	}
	if code := n1.HTTPDo("GET", "/v1/cluster", bt, nil, nil); code != 401 {
		t.Fatalf("GET /v1/cluster as a user: %d, want 401", code)
	}
	// Node 2 is back (the partition healed): alice's device there counts
	// again.
	c.Proxies[1].Restore()
	testwait.Until(t, 10*time.Second, "node 2 reconnected", func() bool { return n2.Srv.ClusterConnected() })
	if p := waitPresence(t, bob.In, "p/alice", 4); p.Status != "online" {
		t.Fatalf("alice with node 2 back: %+v", p)
	}
	testwait.Until(t, 10*time.Second, "GET /v1/cluster shows node 2 alive with its connection", func() bool {
		if code := n1.AdminGet("/v1/cluster", &view); code != 200 || len(view.Nodes) != 2 {
			return false
		}
		return view.Nodes[1].Alive && view.Nodes[1].Connections == 1
	})
}

// TestClusterPushSuppression: push runs on every node. bob's device on
// node 2 acknowledges alice's message (sent through node 1) live: no node
// pushes it, whichever claims the job, since the acknowledgement is a fact
// in the store. Once bob is offline, the next message is pushed once.
func TestClusterPushSuppression(t *testing.T) {
	apnsSrv, fcmSrv := pushtest.NewAPNsServer(t), pushtest.NewFCMServer(t)
	o := brokertest.Options{Push: newRouter(t, apnsSrv, fcmSrv)}
	o.Config.Push = push.ServiceConfig{Grace: 300 * time.Millisecond, Poll: 20 * time.Millisecond}
	c := brokertest.StartCluster(t, 3, o)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	at, bt := n1.User("alice"), n1.User("bob")
	register(t, n1, bt, "apns", apnsToken("bob-phone"))
	bob := n2.MustV5("bob", bt, "bob/laptop", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	alice := n1.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	alice.Pub(t, "u/bob", `{"body":{"text":"live"}}`)
	bob.In.WaitN(t, 1, protocol.TypeMsg)
	skipped := func() float64 {
		var sum float64
		for _, n := range c.Nodes {
			sum += pushMetric(t, n, "parley_push_skipped_total")
		}
		return sum
	}
	testwait.Until(t, 10*time.Second, "a node claimed the job and skipped bob (acknowledged)", func() bool {
		jobs, _, err := n1.Store.CountPushJobs(brokertest.Ctx(t, 5*time.Second))
		return err == nil && jobs == 0 && skipped() >= 1
	})
	if got := apnsSrv.Count(); got != 0 {
		t.Fatalf("%d pushes for a message bob's device acknowledged on another node", got)
	}
	bob.Close()
	n2.WaitGone(t, "bob/laptop")
	alice.Pub(t, "u/bob", `{"body":{"text":"offline"}}`)
	testwait.Until(t, 10*time.Second, "the push of the message bob missed", func() bool { return apnsSrv.Count() >= 1 })
	testwait.Until(t, 10*time.Second, "the push queue empty", func() bool {
		jobs, _, err := n1.Store.CountPushJobs(brokertest.Ctx(t, 5*time.Second))
		return err == nil && jobs == 0
	})
	if got := apnsSrv.Count(); got != 1 {
		t.Fatalf("%d pushes of one message, want 1", got)
	}
}

// TestClusterPresenceSubscribedWhileNATSIsDown: a subscriber to p/{user}
// on a node that cannot ask the cluster (NATS down, or JetStream not ready
// after a start) gets the node's own view at once, and the user's real
// state once the cluster answers; a node that retained nothing would
// ignore the user's later changes, and its subscriber would wait for ever.
func TestClusterPresenceSubscribedWhileNATSIsDown(t *testing.T) {
	c := brokertest.StartCluster(t, 2, brokertest.Options{})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	at, bt := n1.User("alice"), n1.User("bob")
	if code := n1.HTTPDo("PUT", "/v1/me/presence", at, map[string]string{"privacy": "everyone"}, nil); code != 200 {
		t.Fatalf("privacy: %d", code)
	}
	c.NATS.Stop()
	testwait.Until(t, 10*time.Second, "both nodes see NATS gone", func() bool {
		return !n1.Srv.ClusterConnected() && !n2.Srv.ClusterConnected()
	})
	bob := n1.MustV5("bob", bt, "bob/phone", brokertest.V5Options{})
	bob.Sub(t, "p/alice", 1)
	if p := waitPresence(t, bob.In, "p/alice", 1); p.Status != "offline" {
		t.Fatalf("first state without NATS %+v, want offline (node 1's view)", p)
	}
	c.NATS.Restart()
	testwait.Until(t, 10*time.Second, "both nodes reconnected to NATS", func() bool {
		return n1.Srv.ClusterConnected() && n2.Srv.ClusterConnected()
	})
	phone := n2.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	phone.Sub(t, "u/alice", 1) // counted once its SUBACK is back
	if p := waitPresence(t, bob.In, "p/alice", 2); p.Status != "online" {
		t.Fatalf("after alice connected to node 2: %+v", p)
	}
}
