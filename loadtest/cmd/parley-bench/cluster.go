package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/parleychat/parley/loadtest"
)

// The cluster section runs the dm workload on one Parley node and on the
// nodes of a Parley cluster on this machine, which share one Postgres
// database and talk through NATS. Users are spread over the nodes (user i on
// node i mod 3) and most DMs go to a user on another node, so the figure is
// the publish → delivery of a DM that crosses nodes, next to one node's.

// clusterNodes is the size of the cluster.
const clusterNodes = 3

// clusterAim is the aim: cross-node delivery adds at most this many
// milliseconds at p99 to one node's, at 1,000 DMs/s, with nothing lost,
// duplicated or missing.
const clusterAim = 2.0

// clusterCrossNode is the share of DMs sent to a user on another node.
const clusterCrossNode = 0.9

func runCluster(ctx context.Context, o *options, res *results) error {
	natsURL := o.clusterNATS
	if natsURL == "" {
		ns, err := startNATS(filepath.Join(o.work, "nats"))
		if err != nil {
			return err
		}
		defer ns.stop()
		natsURL = ns.url
		res.Settings["cluster_nats"] = "nats-server embedded in the bench, JetStream on"
	} else {
		res.Settings["cluster_nats"] = natsURL
	}
	res.Settings["cluster"] = fmt.Sprintf("user i on node i mod %d, %.0f%% of DMs to a user on another node, %v per run",
		clusterNodes, 100*clusterCrossNode, o.parleyDur)
	// The one node stands alone, whatever the bench's environment says.
	single, err := startParley(o, "parley-single", "1 node", true, "PARLEY_CLUSTER_NATS_URL=")
	if err != nil {
		return err
	}
	defer single.stop()
	c, err := startCluster(o, natsURL)
	if err != nil {
		return err
	}
	defer c.stop()
	// One node, then the cluster, in turn: other work on the machine hits
	// both alike.
	for rep := 1; rep <= o.repeat; rep++ {
		for _, nodes := range [][]*broker{{single}, c.nodes} {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			cfg := loadtest.Config{Workload: loadtest.WorkloadDM, Users: o.dmUsers, Rate: o.dmRate, CrossNode: clusterCrossNode}
			r, err := parleyOnce(ctx, o, nodes, storePostgres, cfg, rep)
			if err != nil {
				return err
			}
			r.Nodes = len(nodes)
			o.progress("cluster %d node(s) #%d: %s", r.Nodes, rep, r.clusterString())
			res.Cluster = append(res.Cluster, r)
		}
	}
	return nil
}

// cluster is the Parley nodes of the cluster section.
type cluster struct {
	nodes []*broker
	drop  func() // drops their database
}

// startCluster starts clusterNodes Parley nodes on one fresh Postgres
// database, joined through the NATS server at natsURL, one after the other
// (the first applies the migrations). They share the bench administrator,
// so that any of them provisions users.
func startCluster(o *options, natsURL string) (*cluster, error) {
	dbURL, drop, err := createDatabase(o)
	if err != nil {
		return nil, err
	}
	c := &cluster{drop: drop}
	pass := randomSecret()
	for k := range clusterNodes {
		name := fmt.Sprintf("parley-node%d", k+1)
		b, err := startParleyNode(o, parleySpec{
			name: name, label: fmt.Sprintf("cluster node %d", k+1), dbURL: dbURL, adminPass: pass,
			env: clusterEnv(natsURL, name),
		})
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("cluster node %d: %w", k+1, err)
		}
		c.nodes = append(c.nodes, b)
	}
	return c, nil
}

// clusterEnv returns the settings that make a Parley node one of a cluster.
func clusterEnv(natsURL, node string) []string {
	return []string{"PARLEY_CLUSTER_NATS_URL=" + natsURL, "PARLEY_CLUSTER_NODE=" + node}
}

// stop stops the nodes, then drops their database.
func (c *cluster) stop() {
	for _, b := range c.nodes {
		b.stop()
	}
	c.drop()
}

// natsServer is a NATS server with JetStream inside the bench process, on a
// free loopback port, so that the cluster section does not depend on one
// running on the machine.
type natsServer struct {
	s   *server.Server
	url string
}

// startNATS starts a NATS server that keeps its JetStream files in dir.
func startNATS(dir string) (*natsServer, error) {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: dir, JetStreamMaxMemory: 256 << 20, JetStreamMaxStore: 1 << 30,
	})
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats: not accepting connections after 10s")
	}
	return &natsServer{s: s, url: s.ClientURL()}, nil
}

func (n *natsServer) stop() {
	n.s.Shutdown()
	n.s.WaitForShutdown()
}
