package loadtest

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/loadtest/parleyapi"
	"github.com/parleychat/parley/loadtest/report"
)

// TestParleySmoke runs the dm and group workloads' code for about two seconds
// against a real Parley node started in this process (embedded store, free
// loopback ports, no rate limit) and wants every accepted message delivered
// once: no loss, no duplicates, no gaps in any inbox, and every sender's copy
// back. Missing delivered receipts are logged, not failed: Parley loses one
// now and then (see bench/README.md, "Other findings").
//
// It does not check the order of live deliveries: Parley may deliver an
// inbox's entries out of seq order when several are committed together (the
// report counts them), and clients reorder by seq.
func TestParleySmoke(t *testing.T) {
	tests := map[string]struct {
		cfg Config
		// nodes lists the node's addresses this many times: the load tester
		// takes them for the nodes of a cluster (spreading, provisioning
		// through every "node", same-node and cross-node latencies), while
		// every delivery stays on the one real node.
		nodes int
	}{
		"dm":                {cfg: Config{Workload: WorkloadDM, Users: 20, Rate: 200, Duration: 2 * time.Second}, nodes: 1},
		"group":             {cfg: Config{Workload: WorkloadGroup, Groups: 4, Members: 5, Rate: 100, Duration: 2 * time.Second}, nodes: 1},
		"dm, two addresses": {cfg: Config{Workload: WorkloadDM, Users: 20, Rate: 200, Duration: 2 * time.Second}, nodes: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := tc.cfg
			n := brokertest.Start(t, brokertest.Options{Store: brokertest.SQLite})
			// A transport of the test's own, so that no idle keep-alive
			// connection outlives it (goleak).
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			client := &parleyapi.Client{Base: n.HTTP, AdminUser: brokertest.Admin,
				AdminPassword: brokertest.AdminPassword, HTTP: &http.Client{Transport: tr}}
			var nodes apis
			for range tc.nodes {
				cfg.Brokers, cfg.HTTP = append(cfg.Brokers, n.MQTT), append(cfg.HTTP, n.HTTP)
				nodes = append(nodes, nodeAPI{Provisioner: client, base: n.HTTP})
			}
			cfg.Admin = brokertest.Admin + ":" + brokertest.AdminPassword
			cfg.Provisioner = client
			if tc.nodes > 1 {
				cfg.Provisioner = nodes
			}
			cfg.Drain = 5 * time.Second
			cfg.Logger = testLogger(t)
			var progress bytes.Buffer
			cfg.Progress = &progress
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := Run(ctx, cfg)
			if err != nil {
				t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
			}
			checkClean(t, rep)
			same, cross := rep.Latency[report.LatencyDeliverySameNode].Count, rep.Latency[report.LatencyDeliveryCrossNode].Count
			switch {
			case tc.nodes == 1 && same+cross != 0:
				t.Errorf("one node: %d same-node and %d cross-node deliveries timed", same, cross)
			case tc.nodes > 1 && (same+cross != rep.Accounting.Delivered || 4*same > same+cross || 50*same < same+cross):
				// 10% of DMs stay on their sender's node: here between 2%
				// and 25% (out of bounds by chance: below one in a million).
				t.Errorf("%d deliveries: %d same node, %d cross node", rep.Accounting.Delivered, same, cross)
			}
			if t.Failed() {
				var sum bytes.Buffer
				_ = rep.WriteSummary(&sum)
				t.Logf("summary:\n%s", sum.String())
			}
		})
	}
}

// checkClean fails the test unless every accepted Parley message reached
// every receiver once, with no gaps, its sender's copy and its receipt.
func checkClean(t *testing.T, rep *report.Report) {
	t.Helper()
	m, a, in, rc := rep.Messages, rep.Accounting, rep.Inboxes, rep.Receipts
	if m == nil || a == nil || in == nil || rc == nil {
		t.Fatalf("incomplete report: messages %v, accounting %v, inboxes %v, receipts %v", m, a, in, rc)
	}
	if m.Sent == 0 || m.Acked != m.Sent || m.Refused != 0 || m.Shed != 0 {
		t.Errorf("messages: %+v", *m)
	}
	if rep.Lost() != 0 || a.Lost != 0 || a.Duplicates != 0 || a.Delivered != a.Expected || a.Unexpected != 0 {
		t.Errorf("accounting: %+v", *a)
	}
	if in.Gaps != 0 || in.Dups != 0 {
		t.Errorf("inbox sequences: %+v", *in)
	}
	if rc.Expected != m.Acked {
		t.Errorf("receipts owed for %d messages, want one for each of the %d accepted", rc.Expected, m.Acked)
	}
	// A group message whose last acknowledgement shares a receipt batch with
	// a message fewer members have is reported with the lower count, so it
	// may never be reported as delivered to all; and a receipt for a DM acked
	// out of order right after the node first saw its inbox is lost.
	if rc.Received+rc.Partial != rc.Expected {
		t.Logf("KNOWN PARLEY ISSUE: %d of %d messages got no delivered receipt", rc.Expected-rc.Received-rc.Partial, rc.Expected)
	}
	if rc.Partial > 0 {
		t.Logf("receipts: %d of %d group messages reported delivered to some members only", rc.Partial, rc.Expected)
	}
	for _, w := range rep.Warnings {
		if !strings.HasPrefix(w, "GROUP RECEIPTS:") {
			t.Errorf("warning: %s", w)
		}
	}
}
