package cluster

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/parleychat/parley/internal/testwait"
)

// startBus connects a bus named n1 to an embedded NATS server with
// JetStream; the server is returned so that the test can stop it.
func startBus(t *testing.T) (*Bus, *natsserver.Server) {
	t.Helper()
	srv, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(testwait.Patience(5 * time.Second)) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(srv.Shutdown)
	b, err := Connect(Config{URL: srv.ClientURL(), Node: "n1", Replicas: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	testwait.Until(t, 5*time.Second, "the bus connected", func() bool { return b.Check() == nil })
	return b, srv
}

func TestUserNodes(t *testing.T) {
	b, srv := startBus(t)
	ctx := context.Background()
	kv, err := b.kv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Peers as heartbeats made them: n2 alive in incarnation 2, n3 dead;
	// n4 never heard, long after this node started.
	b.started = time.Now().Add(-time.Hour)
	b.peers.peers["n2"] = &NodeInfo{Node: "n2", Incarnation: 2, Alive: true}
	b.peers.peers["n3"] = &NodeInfo{Node: "n3", Incarnation: 3}
	cases := map[string]struct {
		nodes map[string]int64 // node -> incarnation in alice's key; nil: no key
		want  int
	}{
		"no key (this node's device not recorded yet)": {nil, 1},
		"this node only":                     {map[string]int64{"n1": b.inc}, 1},
		"another live node, not this one":    {map[string]int64{"n2": 2}, 2},
		"this node and another live one":     {map[string]int64{"n1": b.inc, "n2": 2}, 2},
		"this node's previous incarnation":   {map[string]int64{"n1": b.inc - 1, "n2": 2}, 2},
		"a live node's previous incarnation": {map[string]int64{"n1": b.inc, "n2": 1}, 1},
		"a dead node and one never heard":    {map[string]int64{"n1": b.inc, "n3": 3, "n4": 4}, 1},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if err := kv.Purge(ctx, presenceKey("alice")); err != nil {
				t.Fatal(err)
			}
			if c.nodes != nil {
				v := presenceValue{Nodes: map[string]nodePresence{}}
				for node, inc := range c.nodes {
					v.Nodes[node] = nodePresence{Status: "online", Since: 1, Incarnation: inc}
				}
				data, _ := json.Marshal(v)
				if _, err := kv.Put(ctx, presenceKey("alice"), data); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := b.UserNodes(ctx, "alice"); err != nil || got != c.want {
				t.Fatalf("UserNodes = %d, %v; want %d", got, err, c.want)
			}
		})
	}

	// NATS away: an error at once, for the publisher to keep the last share.
	srv.Shutdown()
	testwait.Until(t, 5*time.Second, "the bus disconnected", func() bool { return b.Check() != nil })
	qctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := time.Now()
	if n, err := b.UserNodes(qctx, "alice"); err == nil || time.Since(start) > testwait.Patience(time.Second) {
		t.Fatalf("UserNodes with NATS down = %d, %v after %v; want an error at once", n, err, time.Since(start))
	}
}
