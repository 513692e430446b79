package brokertest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/parleychat/parley/internal/testwait"
)

// NATS is an embedded NATS cluster on free loopback ports, as nats-server's
// own tests run it: each server routes to the first.
type NATS struct {
	t       testing.TB
	Servers []*natsserver.Server
	ports   []int // client ports, kept across Stop and Restart
	routes  []int // cluster ports
}

// StartNATS starts n routed NATS servers and stops them when the test ends.
func StartNATS(t testing.TB, n int) *NATS {
	t.Helper()
	c := &NATS{t: t, Servers: make([]*natsserver.Server, n), ports: make([]int, n), routes: make([]int, n)}
	for i := range n {
		c.ports[i], c.routes[i] = -1, -1
	}
	c.start()
	t.Cleanup(c.Stop)
	return c
}

func (c *NATS) start() {
	c.t.Helper()
	for i := range c.Servers {
		o := &natsserver.Options{
			ServerName: fmt.Sprintf("nats%d", i+1),
			Host:       "127.0.0.1", Port: c.ports[i],
			NoLog: true, NoSigs: true,
			Cluster: natsserver.ClusterOpts{Name: "parley-test", Host: "127.0.0.1", Port: c.routes[i]},
		}
		if i > 0 {
			o.Routes = natsserver.RoutesFromStr(fmt.Sprintf("nats://127.0.0.1:%d", c.routes[0]))
		}
		s, err := natsserver.NewServer(o)
		if err != nil {
			c.t.Fatalf("nats server %d: %v", i+1, err)
		}
		go s.Start()
		if !s.ReadyForConnections(Patience(5 * time.Second)) {
			c.t.Fatalf("nats server %d did not start", i+1)
		}
		c.Servers[i] = s
		c.ports[i] = s.Addr().(*net.TCPAddr).Port
		c.routes[i] = s.ClusterAddr().Port
	}
	testwait.Until(c.t, 5*time.Second, "NATS servers routed to each other", func() bool {
		for _, s := range c.Servers {
			if s.NumRemotes() < len(c.Servers)-1 {
				return false
			}
		}
		return true
	})
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
	c.start()
}

// Cluster is several Parley nodes on one Postgres database, joined through
// an embedded NATS cluster.
type Cluster struct {
	Nodes []*Node
	NATS  *NATS
}

// StartCluster starts n nodes (named n1, n2, …) on one fresh Postgres
// database and a NATS cluster of n servers; node i talks to NATS server i,
// so that announcements cross the NATS routes as in production. o applies
// to every node (its Store must be Postgres: the nodes share the database).
func StartCluster(t testing.TB, n int, o Options) *Cluster {
	t.Helper()
	if o.Store != "" && o.Store != Postgres {
		t.Fatalf("a cluster runs on Postgres, not %s", o.Store)
	}
	c := &Cluster{NATS: StartNATS(t, n)}
	if o.DBURL == "" {
		o.DBURL = NewDatabase(t)
	}
	for i := range n {
		no := o
		no.Config.Cluster.NATSURL = c.NATS.URL(i)
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
