package brokertest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/internal/testwait"
)

// NATS is an embedded NATS cluster with JetStream on free loopback ports,
// as nats-server's own tests run it: every server routes to the others.
type NATS struct {
	t       testing.TB
	Servers []*natsserver.Server
	ports   []int    // client ports, kept across Stop and Restart
	routes  []int    // cluster ports
	dirs    []string // JetStream stores
}

// StartNATS starts n routed NATS servers and stops them when the test ends.
func StartNATS(t testing.TB, n int) *NATS {
	t.Helper()
	c := &NATS{t: t, Servers: make([]*natsserver.Server, n), ports: make([]int, n), routes: make([]int, n),
		dirs: make([]string, n)}
	for i := range n {
		c.dirs[i] = t.TempDir()
	}
	t.Cleanup(c.Stop)
	for attempt := 1; ; attempt++ {
		for i := range n {
			// A clustered JetStream server needs its routes configured from
			// the start: the cluster ports are chosen here (free now, bound
			// at once; another process may take one in between: then the
			// cluster starts again on other ports).
			c.ports[i], c.routes[i] = -1, freePort(t)
		}
		err := c.start()
		if err == nil {
			return c
		}
		c.Stop()
		if attempt == 3 {
			t.Fatalf("NATS cluster: %v", err)
		}
		t.Logf("NATS cluster did not start (%v): again on other ports", err)
	}
}

// fatalLog catches what makes an embedded server give up (a port taken).
type fatalLog struct{ ch chan string }

func (l fatalLog) Noticef(string, ...any) {}
func (l fatalLog) Warnf(string, ...any)   {}
func (l fatalLog) Errorf(string, ...any)  {}
func (l fatalLog) Debugf(string, ...any)  {}
func (l fatalLog) Tracef(string, ...any)  {}
func (l fatalLog) Fatalf(format string, v ...any) {
	select {
	case l.ch <- fmt.Sprintf(format, v...):
	default:
	}
}

func (c *NATS) start() error {
	c.t.Helper()
	for i := range c.Servers {
		o := &natsserver.Options{
			ServerName: fmt.Sprintf("nats%d", i+1),
			Host:       "127.0.0.1", Port: c.ports[i],
			NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: c.dirs[i],
			// NoAdvertise: clients keep to the server they were given, so
			// that a Proxy in front of it partitions a node for real.
			Cluster: natsserver.ClusterOpts{Name: "parley-test", Host: "127.0.0.1", Port: c.routes[i], NoAdvertise: true},
		}
		var routes []string
		for j, p := range c.routes {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		o.Routes = natsserver.RoutesFromStr(strings.Join(routes, ","))
		s, err := natsserver.NewServer(o)
		if err != nil {
			c.t.Fatalf("nats server %d: %v", i+1, err)
		}
		fl := fatalLog{ch: make(chan string, 1)}
		s.SetLoggerV2(fl, false, false, false)
		c.Servers[i] = s
		go s.Start()
		// With JetStream clustered, a server is ready for clients only once
		// its peers are up: wait for its listeners, start the others, then
		// wait for readiness.
		deadline := time.Now().Add(Patience(5 * time.Second))
		for s.Addr() == nil || s.ClusterAddr() == nil {
			select {
			case msg := <-fl.ch:
				return fmt.Errorf("nats server %d: %s", i+1, msg)
			case <-time.After(5 * time.Millisecond): // polling the listeners: nats-server has no signal for them
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("nats server %d not listening", i+1)
			}
		}
		c.ports[i] = s.Addr().(*net.TCPAddr).Port
		c.routes[i] = s.ClusterAddr().Port
	}
	for i, s := range c.Servers {
		if !s.ReadyForConnections(Patience(10 * time.Second)) {
			c.t.Fatalf("nats server %d did not become ready", i+1)
		}
	}
	testwait.Until(c.t, 5*time.Second, "NATS servers routed to each other", func() bool {
		for _, s := range c.Servers {
			if s.NumRemotes() < len(c.Servers)-1 {
				return false
			}
		}
		return true
	})
	// JetStream (presence) answers once its cluster has elected a leader.
	nc, err := nats.Connect(c.URL(0))
	if err != nil {
		c.t.Fatalf("connect to NATS: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	testwait.Until(c.t, 10*time.Second, "JetStream ready", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
	return nil
}

// URL returns the client URL of server i.
func (c *NATS) URL(i int) string { return "nats://127.0.0.1:" + strconv.Itoa(c.ports[i]) }

// URLs returns every server's client URL, comma separated.
func (c *NATS) URLs() string {
	us := make([]string, len(c.ports))
	for i := range c.ports {
		us[i] = c.URL(i)
	}
	return strings.Join(us, ",")
}

// Stop shuts every server down (an outage). Safe to call twice.
func (c *NATS) Stop() {
	for i, s := range c.Servers {
		if s != nil {
			s.Shutdown()
			s.WaitForShutdown()
			c.Servers[i] = nil
		}
	}
}

// Restart starts the servers again on the same ports.
func (c *NATS) Restart() {
	c.t.Helper()
	if err := c.start(); err != nil {
		c.t.Fatalf("NATS restart: %v", err)
	}
}

// Cluster is several Parley nodes on one Postgres database, joined through
// an embedded NATS cluster.
type Cluster struct {
	Nodes []*Node
	NATS  *NATS
	// Proxies[i], for the nodes StartClusterVia was asked to proxy, sits
	// between node i and its NATS server: Cut partitions the node.
	Proxies map[int]*Proxy
}

// StartCluster starts n nodes (named n1, n2, …) on one fresh Postgres
// database and a NATS cluster of n servers; node i talks to NATS server i,
// so that announcements cross the NATS routes as in production. o applies
// to every node (its Store must be Postgres: the nodes share the database).
func StartCluster(t testing.TB, n int, o Options) *Cluster {
	t.Helper()
	return StartClusterVia(t, n, o, nil)
}

// StartClusterVia is StartCluster with the nodes numbered in proxied (from
// 0) talking to NATS through a Proxy the test can cut.
func StartClusterVia(t testing.TB, n int, o Options, proxied []int) *Cluster {
	t.Helper()
	if o.Store != "" && o.Store != Postgres {
		t.Fatalf("a cluster runs on Postgres, not %s", o.Store)
	}
	c := &Cluster{NATS: StartNATS(t, n), Proxies: map[int]*Proxy{}}
	if o.DBURL == "" {
		o.DBURL = NewDatabase(t)
	}
	for i := range n {
		no := o
		no.Config.Cluster.NATSURL = c.NATS.URL(i)
		if slices.Contains(proxied, i) {
			p := NewProxy(t, strings.TrimPrefix(c.NATS.URL(i), "nats://"))
			c.Proxies[i] = p
			no.Config.Cluster.NATSURL = "nats://" + p.Addr()
		}
		no.Config.Cluster.Node = fmt.Sprintf("n%d", i+1)
		node := Start(t, no)
		node.Name = no.Config.Cluster.Node
		c.Nodes = append(c.Nodes, node)
	}
	testwait.Until(t, 5*time.Second, "every node connected to NATS", func() bool {
		for _, node := range c.Nodes {
			if !node.Srv.ClusterConnected() {
				return false
			}
		}
		return true
	})
	return c
}

// freePort returns a loopback TCP port free at the moment.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
