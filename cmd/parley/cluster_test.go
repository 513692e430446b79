package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
)

// freeAddr returns a loopback address with a port free at the moment.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// clusterNode is one parley process of a cluster, on fixed addresses so
// that it restarts where HAProxy expects it.
type clusterNode struct {
	name, mqtt, ws, http string
	env                  []string
	c                    *child
}

func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	n.c = startChildAt(t, n.mqtt, n.ws, n.http, n.env...)
}

// startHAProxy runs a real HAProxy in front of the nodes' MQTT listeners,
// with health checks on their /readyz, as configs/haproxy.cfg does. It
// returns the frontend's address.
func startHAProxy(t *testing.T, nodes []*clusterNode) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed (Debian: apt-get install haproxy; .ci/run installs it): %v", err)
	}
	front := freeAddr(t)
	var servers strings.Builder
	for _, n := range nodes {
		_, hport, _ := net.SplitHostPort(n.http)
		fmt.Fprintf(&servers, "    server %s %s check port %s\n", n.name, n.mqtt, hport)
	}
	cfg := fmt.Sprintf(`global
    maxconn 2000
defaults
    mode tcp
    timeout connect 2s
    timeout client 5m
    timeout server 5m
    retries 3
    option redispatch 1
frontend mqtt
    bind %s
    default_backend parley
backend parley
    balance leastconn
    option httpchk GET /readyz
    default-server inter 200ms fall 2 rise 2 on-marked-down shutdown-sessions
%s`, front, servers.String())
	file := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", file)
	out := &strings.Builder{}
	var mu sync.Mutex
	cmd.Stdout, cmd.Stderr = lockedWriter{&mu, out}, lockedWriter{&mu, out}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("haproxy output:\n%s", out.String())
			mu.Unlock()
		}
	})
	testwait.Until(t, 10*time.Second, "haproxy listening", func() bool {
		c, err := net.Dial("tcp", front)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return front
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// chatter is one user of the node-failure test: it sends to the next
// user's inbox and reads its own, through HAProxy, reconnecting (and
// resending what had no PUBACK, with its cid) whenever its node goes.
type chatter struct {
	id, token, to string

	mu       sync.Mutex
	acked    []string          // cids acknowledged, in order
	received []protocol.Header // stored entries received, every connection, in order
	cids     map[int64]string  // seq -> cid of what was received
}

// connect dials HAProxy and resumes the user's persistent session.
func (c *chatter) connect(ctx context.Context, front string) (*paho.Client, error) {
	conn, err := net.DialTimeout("tcp", front, 2*time.Second)
	if err != nil {
		return nil, err
	}
	cl := paho.NewClient(paho.ClientConfig{
		Conn: conn, ClientID: c.id + "/phone",
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			var e struct {
				protocol.Header
				Cid string `json:"cid"`
			}
			// Every stored entry counts for gaplessness: the inbox holds
			// the user's messages, its own sent copies and the delivered
			// receipts of what it sent.
			if json.Unmarshal(pr.Packet.Payload, &e) == nil && e.Seq > 0 {
				c.mu.Lock()
				c.received = append(c.received, e.Header)
				if e.Type == protocol.TypeMsg {
					c.cids[e.Seq] = e.Cid
				}
				c.mu.Unlock()
			}
			return true, nil
		}},
		OnClientError: func(error) {}, PacketTimeout: brokertest.Patience(5 * time.Second),
	})
	expiry := uint32(3600)
	cctx, cancel := context.WithTimeout(ctx, brokertest.Patience(5*time.Second))
	defer cancel()
	if _, err := cl.Connect(cctx, &paho.Connect{ClientID: c.id + "/phone", Username: c.id, UsernameFlag: true,
		Password: []byte(c.token), PasswordFlag: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := cl.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "u/" + c.id, QoS: 1}}}); err != nil {
		conn.Close()
		return nil, err
	}
	return cl, nil
}

// run connects, says so on ready, waits for start, then sends until ctx
// ends, one message at a time, each retried with its cid until
// acknowledged.
func (c *chatter) run(ctx context.Context, front string, ready *sync.WaitGroup, start <-chan struct{}) {
	var cl *paho.Client
	defer func() {
		if cl != nil {
			cl.Disconnect(&paho.Disconnect{})
		}
	}()
	// Subscribed before anyone sends: a device new to its inbox starts at
	// its end, and what was sent before is history to it.
	for cl == nil && ctx.Err() == nil {
		cl, _ = c.connect(ctx, front)
	}
	ready.Done()
	select {
	case <-start:
	case <-ctx.Done():
	}
	for n := 0; ctx.Err() == nil; {
		if cl == nil {
			var err error
			if cl, err = c.connect(ctx, front); err != nil {
				cl = nil
				select {
				case <-time.After(50 * time.Millisecond): // pacing a reconnect, not a wait for a condition
				case <-ctx.Done():
				}
				continue
			}
		}
		cid := fmt.Sprintf("%s-%d", c.id, n)
		pctx, cancel := context.WithTimeout(ctx, brokertest.Patience(3*time.Second))
		pr, err := cl.Publish(pctx, pahoPublish("u/"+c.to, `{"cid":"`+cid+`","body":{"text":"`+cid+`"}}`))
		cancel()
		if err != nil || pr == nil || pr.ReasonCode != 0 {
			cl.Disconnect(&paho.Disconnect{})
			cl = nil // the node went (or refused): reconnect and send the same cid again
			continue
		}
		c.mu.Lock()
		c.acked = append(c.acked, cid)
		c.mu.Unlock()
		n++
		time.Sleep(20 * time.Millisecond) // pacing the load
	}
}

func (c *chatter) ackedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acked)
}

// TestClusterNodeFailure: three parley processes on one Postgres, joined by
// an embedded NATS cluster, behind a real HAProxy. 30 users chat through
// HAProxy; one node is killed with SIGKILL mid-run. Its clients reconnect
// through HAProxy to the others; every acknowledged message reaches its
// recipient, gapless and in order; a user whose only device was on the dead
// node shows offline once the node timeout passes; the node restarts and
// takes connections again.
func TestClusterNodeFailure(t *testing.T) {
	db := pgtest.NewDatabase(t)
	nats := brokertest.StartNATS(t, 3)
	var nodes []*clusterNode
	for i := range 3 {
		n := &clusterNode{name: fmt.Sprintf("n%d", i+1), mqtt: freeAddr(t), ws: freeAddr(t), http: freeAddr(t)}
		n.env = []string{"PARLEY_DATABASE_URL=" + db, "PARLEY_CLUSTER_NATS_URL=" + nats.URL(i),
			"PARLEY_CLUSTER_NODE=" + n.name, "PARLEY_CLUSTER_HEARTBEAT=200ms", "PARLEY_CLUSTER_NODE_TIMEOUT=2s",
			"PARLEY_ADMINS=" + brokertest.Admin + ":" + brokertest.AdminPassword,
			"PARLEY_LIMITS_MAX_CONNECTIONS_PER_IP=-1", "PARLEY_LIMITS_CONNECT_RATE_PER_IP=-1", "PARLEY_LIMITS_USER_RATE=-1", "PARLEY_LOG_LEVEL=" + os.Getenv("PARLEY_TEST_CHILD_LOG")}
		n.start(t)
		nodes = append(nodes, n)
	}
	front := startHAProxy(t, nodes)
	st := testStore(t, db)
	api := nodes[0].c.node(t)

	// zed's only device is on node 2, directly; the administrator watches
	// p/zed on node 1.
	zt := api.User("zed")
	if code := api.HTTPDo("PUT", "/v1/me/presence", zt, map[string]string{"privacy": "everyone"}, nil); code != 200 {
		t.Fatalf("privacy: %d", code)
	}
	watcher := nodes[0].c.node(t).MustV5(brokertest.Admin, brokertest.AdminPassword, "admin/watch", brokertest.V5Options{})
	watcher.Sub(t, "p/zed", 1)
	nodes[1].c.node(t).MustV5("zed", zt, "zed/phone", brokertest.V5Options{})
	watcher.In.WaitFor(t, 10*time.Second, "zed online", func(ms []brokertest.Msg) bool {
		return len(ms) > 0 && strings.Contains(string(ms[len(ms)-1].Payload), `"online"`)
	})

	const users = 30
	chatters := make([]*chatter, users)
	for i := range users {
		chatters[i] = &chatter{id: fmt.Sprintf("u%02d", i), to: fmt.Sprintf("u%02d", (i+1)%users), cids: map[int64]string{}}
		chatters[i].token = api.User(chatters[i].id)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg, ready sync.WaitGroup
	start := make(chan struct{})
	ready.Add(len(chatters))
	for _, c := range chatters {
		wg.Go(func() { c.run(ctx, front, &ready, start) })
	}
	defer func() { stop(); wg.Wait() }()
	ready.Wait()
	// Each new device's starting point (its cursor) is in the store before
	// anyone sends: a device that reconnects to another node resumes there.
	for _, c := range chatters {
		testwait.Until(t, 10*time.Second, c.id+"'s cursor stored", func() bool {
			_, err := st.GetCursor(brokertest.Ctx(t, 5*time.Second), c.id+"/phone", "u/"+c.id)
			return err == nil
		})
	}
	close(start)
	total := func() int {
		n := 0
		for _, c := range chatters {
			n += c.ackedCount()
		}
		return n
	}
	testwait.Until(t, 30*time.Second, "300 messages acknowledged", func() bool { return total() >= 300 })

	// kill -9 node 2.
	killed := time.Now()
	if err := nodes[1].c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-nodes[1].c.exited
	before := total()
	testwait.Until(t, 30*time.Second, "300 more messages acknowledged after the kill", func() bool { return total() >= before+300 })
	watcher.In.WaitFor(t, 30*time.Second, "zed offline (node 2 dead)", func(ms []brokertest.Msg) bool {
		return len(ms) > 0 && strings.Contains(string(ms[len(ms)-1].Payload), `"offline"`)
	})
	t.Logf("zed offline %v after node 2 was killed (node timeout 2s, heartbeat 200ms)", time.Since(killed).Round(10*time.Millisecond))

	// Node 2 restarts and takes connections again (leastconn sends new
	// ones to it once its health checks pass).
	nodes[1].start(t)
	probe := &chatter{id: "probe", token: api.User("probe"), cids: map[int64]string{}}
	testwait.Until(t, 30*time.Second, "a new connection through HAProxy lands on node 2", func() bool {
		cl, err := probe.connect(ctx, front)
		if err == nil {
			defer cl.Disconnect(&paho.Disconnect{})
		}
		return connections(nodes[1].http) > 0
	})
	stop()
	wg.Wait()

	// Every acknowledged message reached its recipient, gapless, in order.
	byRecipient := map[string][]string{}
	for _, c := range chatters {
		c.mu.Lock()
		byRecipient[c.to] = append(byRecipient[c.to], c.acked...)
		c.mu.Unlock()
	}
	// What is still on its way: each recipient connects once more and
	// catches up from its cursor.
	for _, c := range chatters {
		var cl *paho.Client
		testwait.Until(t, 30*time.Second, c.id+" connected again", func() bool {
			var err error
			cl, err = c.connect(context.Background(), front)
			return err == nil
		})
		defer cl.Disconnect(&paho.Disconnect{})
	}
	for _, c := range chatters {
		want := byRecipient[c.id]
		testwait.Until(t, 30*time.Second, c.id+" has every acknowledged message", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			have := map[string]bool{}
			for _, cid := range c.cids {
				have[cid] = true
			}
			for _, cid := range want {
				if !have[cid] {
					return false
				}
			}
			return true
		})
		// Gapless: the device holds every seq of its inbox up to the
		// highest. In order: what its sender sent has seqs in the order
		// sent. (Clients order by seq: live entries of an inbox with
		// several writers, here the sender's messages, the user's own
		// copies and receipts, may arrive slightly out of order, and an
		// entry whose node died between its commit and its announcement
		// comes by gap repair, up to half a second late: docs/protocol.md,
		// docs/cluster.md.)
		c.mu.Lock()
		seqOf := map[string]int64{}
		for seq, cid := range c.cids {
			seqOf[cid] = seq
		}
		c.mu.Unlock()
		// Receipts of the user's own last messages may still be on their
		// way: wait for every seq the store has.
		last, err := st.LastSeq(brokertest.Ctx(t, 5*time.Second), "u/"+c.id)
		if err != nil {
			t.Fatal(err)
		}
		var missing []int64
		t.Cleanup(func() {
			if t.Failed() && len(missing) > 0 {
				t.Logf("%s lacks seqs %v of %d", c.id, missing, last)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				es, _ := st.Read(ctx, "u/"+c.id, missing[0]-1, 1)
				for _, e := range es {
					t.Logf("missing entry: seq %d type %s from %s to %s ts %d", e.Seq, e.Type, e.From, e.To, e.TS)
				}
				cur, err := st.GetCursor(ctx, c.id+"/phone", "u/"+c.id)
				t.Logf("cursor of %s/phone: %d %v", c.id, cur, err)
			}
		})
		testwait.Until(t, 30*time.Second, fmt.Sprintf("%s holds seqs 1..%d", c.id, last), func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			have := map[int64]bool{}
			for _, h := range c.received {
				have[h.Seq] = true
			}
			missing = missing[:0]
			for s := int64(1); s <= last; s++ {
				if !have[s] {
					missing = append(missing, s)
				}
			}
			return len(missing) == 0
		})
		var prev int64
		for _, cid := range want {
			if seqOf[cid] <= prev {
				t.Fatalf("%s: %s stored at seq %d, after one at %d", c.id, cid, seqOf[cid], prev)
			}
			prev = seqOf[cid]
		}
	}
	t.Logf("%d messages acknowledged, every one delivered gapless and in order", total())
}

// connections reads parley_mqtt_connections from a node's /metrics.
func connections(httpAddr string) int {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "parley_mqtt_connections{") || strings.HasPrefix(line, "parley_mqtt_connections ") {
			var n float64
			fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &n)
			return int(n)
		}
	}
	return 0
}

// testStore opens the cluster's database for the test's own reads, closed
// when the test ends.
func testStore(t *testing.T, db string) storage.Store {
	t.Helper()
	st, err := postgres.Open(brokertest.Ctx(t, 5*time.Second), postgres.Config{URL: db, Writers: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
