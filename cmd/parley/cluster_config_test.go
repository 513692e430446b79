package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestClusterSettings: cluster.nats_url empty is a single node; set, it
// needs the shared Postgres, and the node is named after its host unless
// cluster.node names it.
func TestClusterSettings(t *testing.T) {
	load := func(args ...string) *config {
		t.Helper()
		cfg, _, _, err := loadConfig(args, env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return &cfg
	}
	if cc, err := load().cluster(); err != nil || cc.NATSURL != "" {
		t.Fatalf("default: %+v, %v; want a single node", cc, err)
	}
	if _, err := load("-cluster.nats_url", "nats://127.0.0.1:4222").cluster(); err == nil ||
		!strings.Contains(err.Error(), "database.url") {
		t.Fatalf("a cluster on the embedded store: %v, want an error naming database.url", err)
	}
	pg := []string{"-cluster.nats_url", "nats://127.0.0.1:4222", "-database.url", "postgres://127.0.0.1/parley"}
	host, _ := os.Hostname()
	if cc, err := load(pg...).cluster(); err != nil || cc.Node != host || cc.NATSURL != "nats://127.0.0.1:4222" {
		t.Fatalf("cluster without a node name: %+v, %v; want node %q", cc, err, host)
	}
	if cc, err := load(append(pg, "-cluster.node", "n7")...).cluster(); err != nil || cc.Node != "n7" {
		t.Fatalf("named node: %+v, %v", cc, err)
	}
}
