package cluster

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Heartbeats: every node says it is alive every Heartbeat, on one subject
// all nodes hear; a node not heard for NodeTimeout is dead, and so are the
// devices it held (presence). A node is known by its name and its
// incarnation (when it started): a node restarted under the same name is a
// new incarnation, and what the old one held is gone.

// NodeInfo is what a node's heartbeat says, and what GET /v1/cluster
// shows of it.
type NodeInfo struct {
	Node        string    `json:"node"`
	Incarnation int64     `json:"incarnation"` // start time, unix nanoseconds
	Connections int64     `json:"connections"`
	Bus         bool      `json:"bus"`       // connected to NATS (a heartbeat heard says so)
	LastSeen    time.Time `json:"last_seen"` // when this node last heard it (its own clock)
	Alive       bool      `json:"alive"`
}

type heartbeat struct {
	Node        string `json:"node"`
	Incarnation int64  `json:"inc"`
	Connections int64  `json:"conns"`
}

// nodes is what this node knows of the others, from their heartbeats.
type nodes struct {
	mu    sync.Mutex
	peers map[string]*NodeInfo
}

func (b *Bus) heartbeatSubject() string { return b.cfg.Prefix + ".node.heartbeat" }

// startHeartbeats publishes this node's heartbeat every Heartbeat and
// checks the others' for NodeTimeout.
func (b *Bus) startHeartbeats() {
	ch := make(chan *nats.Msg, 256)
	if _, err := b.nc.ChanSubscribe(b.heartbeatSubject(), ch); err != nil {
		b.log.Warn("cluster bus: heartbeats", "error", err)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		tick := time.NewTicker(b.cfg.Heartbeat)
		defer tick.Stop()
		b.beat()
		for {
			select {
			case msg := <-ch:
				b.heard(msg.Data)
			case <-tick.C:
				b.beat()
				b.checkPeers()
			case <-b.quit:
				return
			}
		}
	}()
}

func (b *Bus) beat() {
	var conns int64
	if b.cfg.Connections != nil {
		conns = b.cfg.Connections()
	}
	data, _ := json.Marshal(heartbeat{Node: b.cfg.Node, Incarnation: b.inc, Connections: conns})
	_ = b.nc.Publish(b.heartbeatSubject(), data) // while disconnected, the others time this node out
}

func (b *Bus) heard(data []byte) {
	var hb heartbeat
	if err := json.Unmarshal(data, &hb); err != nil || hb.Node == "" || hb.Node == b.cfg.Node {
		return
	}
	now := time.Now()
	b.peers.mu.Lock()
	p := b.peers.peers[hb.Node]
	restarted := p != nil && p.Alive && p.Incarnation != hb.Incarnation
	revived := p != nil && !p.Alive
	if p == nil {
		p = &NodeInfo{Node: hb.Node}
		b.peers.peers[hb.Node] = p
	}
	p.Incarnation, p.Connections, p.LastSeen, p.Alive, p.Bus = hb.Incarnation, hb.Connections, now, true, true
	b.peers.mu.Unlock()
	switch {
	case restarted:
		b.log.Warn("cluster node restarted: what it held is gone", "node", hb.Node)
		b.nodeDown(hb.Node)
	case revived:
		// Heard again (a partition healed): its devices count again.
		b.log.Info("cluster node heard again", "node", hb.Node)
		b.nodeDown(hb.Node)
	}
}

// checkPeers declares the nodes not heard for NodeTimeout dead.
func (b *Bus) checkPeers() {
	now := time.Now()
	var dead []string
	b.peers.mu.Lock()
	for name, p := range b.peers.peers {
		if p.Alive && now.Sub(p.LastSeen) > b.cfg.NodeTimeout {
			p.Alive, p.Bus = false, false
			dead = append(dead, name)
		}
		if !p.Alive && now.Sub(p.LastSeen) > 24*time.Hour {
			delete(b.peers.peers, name) // gone for good
		}
	}
	b.peers.mu.Unlock()
	for _, name := range dead {
		b.log.Warn("cluster node not heard from: its devices are offline", "node", name, "timeout", b.cfg.NodeTimeout)
		b.nodeDown(name)
	}
}

// nodeDown tells the Presence hook that a node's devices stopped counting,
// or count again.
func (b *Bus) nodeDown(name string) {
	b.m.nodesDown.Inc()
	if r := b.presence.Load(); r != nil {
		r.NodeDown()
	}
}

// alive reports whether a node's incarnation is alive: this node's own, or
// a peer heard within NodeTimeout with that incarnation. Before this node
// has heard a peer at all (it just started, NodeTimeout has not passed), a
// peer is given the benefit of the doubt.
func (b *Bus) alive(node string, inc int64) bool {
	if node == b.cfg.Node {
		return inc == b.inc
	}
	b.peers.mu.Lock()
	defer b.peers.mu.Unlock()
	p := b.peers.peers[node]
	if p == nil {
		return time.Since(b.started) < b.cfg.NodeTimeout
	}
	return p.Alive && p.Incarnation == inc
}

// lastHeard returns when a peer was last heard (zero if never).
func (b *Bus) lastHeard(node string) time.Time {
	b.peers.mu.Lock()
	defer b.peers.mu.Unlock()
	if p := b.peers.peers[node]; p != nil {
		return p.LastSeen
	}
	return time.Time{}
}

// Nodes returns the cluster's nodes as this node knows them, itself first,
// then by name.
func (b *Bus) Nodes() []NodeInfo {
	self := NodeInfo{Node: b.cfg.Node, Incarnation: b.inc, Bus: b.Check() == nil, LastSeen: time.Now(), Alive: true}
	if b.cfg.Connections != nil {
		self.Connections = b.cfg.Connections()
	}
	b.peers.mu.Lock()
	out := make([]NodeInfo, 0, len(b.peers.peers)+1)
	for _, p := range b.peers.peers {
		out = append(out, *p)
	}
	b.peers.mu.Unlock()
	slices.SortFunc(out, func(x, y NodeInfo) int {
		switch {
		case x.Node < y.Node:
			return -1
		case x.Node > y.Node:
			return 1
		}
		return 0
	})
	return append([]NodeInfo{self}, out...)
}
