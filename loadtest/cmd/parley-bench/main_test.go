package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMedian(t *testing.T) {
	tests := map[string]struct {
		in   []float64
		want float64
	}{
		"odd":    {[]float64{3, 1, 2}, 2},
		"even":   {[]float64{4, 1, 3, 2}, 2.5},
		"single": {[]float64{7}, 7},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := median(tc.in); got != tc.want {
				t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func TestFormatting(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q, want %q", in, got, want)
		}
	}
	if got := ratio(30, 20); got != "1.50×" {
		t.Errorf("ratio = %q", got)
	}
	if got := ratio(1, 0); got != "–" {
		t.Errorf("ratio by 0 = %q", got)
	}
	if got := loads([]float64{2.5, 1.25, 3}); got != "1.25–3.00" {
		t.Errorf("loads = %q", got)
	}
}

// TestMarkdown renders made-up results: medians per broker, the ratios
// against Mosquitto and bare mochi, the load averages, and loss.
func TestMarkdown(t *testing.T) {
	res := &results{Started: "2026-11-27T12:00:00Z", Settings: map[string]string{"repeat": "3"}}
	tput := map[string][3]float64{"parley": {10, 30, 20}, "mochi": {40, 40, 40}, "mosquitto": {20, 21, 19}}
	// Parley first, in a fixed order: the loss below is set on its first run.
	for _, broker := range []string{"parley", "mochi", "mosquitto"} {
		v := tput[broker]
		for i, x := range v {
			res.Raw = append(res.Raw, rawRun{Broker: broker, QoS: 1, Mode: modeThroughput, Rep: i + 1, Throughput: x * 1000,
				Sent: 1000, Load1: 1 + float64(i)})
			res.Raw = append(res.Raw, rawRun{Broker: broker, QoS: 1, Mode: modeLatency, Rep: i + 1, P99: x / 10, Sent: 100, Load1: 2})
		}
	}
	res.Raw[0].Lost = 7
	res.DM = []parleyRun{{Workload: "dm", Store: storeSQLite, Rep: 1, Users: 200, Rate: 1000, Sent: 4000, Receipts: 4000,
		ReceiptsExpected: 4000, Delivery: latencyPair{P50: 1, P99: 12.5}, Load1: 1.5}}
	res.Search = []searchResult{{Store: storePostgres, Target: 100, Rate: 2378, MedianP99: 80, Ceiling: 2828, Duration: 3,
		Steps: []searchStep{{Rate: 1000, P99: 10, Pass: true}, {Rate: 2828, P99: 400}}}}
	res.Idle = []idleRun{{Label: "Parley", Conns: 10000, Established: 10000, RSSPerConn: 50 * 1024, GoPerConn: 40 * 1024, CPUPercent: 4.2,
		GoHold: &goMem{Goroutines: 20015}}}
	md := res.markdown()
	for _, want := range []string{
		"| QoS 1 throughput (msg/s) | 20,000 | 40,000 | 20,000 | 1.00× | 0.50× | – | 1.00–3.00 |",
		"| QoS 1 p99 delivery (ms) | 2.00 | 4.00 | 2.00 | 1.00× | 0.50× | – | 2.00 |",
		"Parley, QoS 1 throughput runs: 7 of 3,000 messages lost",
		"| Parley (embedded SQLite) | 1 | 4,000 | 0 | 0 | 0 | 0 | 4,000 of 4,000 |",
		"| Parley (Postgres) | 2,378 | 80.0 | 2,828 | 1,000: 10.0 ✓, 2,828: 400 ✗ |",
		"| Parley | 10,000 | 50.0 KiB | 40.0 KiB | 20,015 | 4.2 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	dir := t.TempDir()
	if err := res.write(dir, md); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{".md", ".json"} {
		if _, err := os.Stat(dir + "/2026-11-27-120000" + ext); err != nil {
			t.Error(err)
		}
	}
	// -render writes the same Markdown again from the JSON.
	if err := os.Remove(dir + "/2026-11-27-120000.md"); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if code := run([]string{"-render", dir + "/2026-11-27-120000.json"}, &out, io.Discard); code != 0 || out.String() != md {
		t.Errorf("render: exit %d, output differs: %v", code, out.String() != md)
	}
	if b, err := os.ReadFile(dir + "/2026-11-27-120000.md"); err != nil || string(b) != md {
		t.Errorf("rendered file: %v", err)
	}
}

// TestClusterMarkdown renders made-up cluster runs: one node and three,
// the cross-node figures against one node's, and the verdict on the aim.
func TestClusterMarkdown(t *testing.T) {
	run := func(nodes, rep int, p50, p99 float64, cross *latencyPair) parleyRun {
		r := parleyRun{Workload: "dm", Store: storePostgres, Nodes: nodes, Rep: rep, Users: 200, Rate: 1000, Sent: 4000,
			Receipts: 4000, ReceiptsExpected: 4000, Delivery: latencyPair{P50: p50, P99: p99}, Load1: 1}
		if nodes > 1 {
			r.SameNode, r.SameNodeDeliveries = &latencyPair{P50: p50, P99: p99}, 400
			r.CrossNode, r.CrossNodeDeliveries = cross, 3600
		}
		return r
	}
	tests := map[string]struct {
		cluster []parleyRun
		want    []string
	}{
		"met": {
			cluster: []parleyRun{
				run(1, 1, 1, 4, nil), run(3, 1, 1.2, 5, &latencyPair{P50: 1.5, P99: 5}),
				run(1, 2, 1, 5, nil), run(3, 2, 1.2, 6, &latencyPair{P50: 1.5, P99: 6.5}),
				run(1, 3, 1, 6, nil), run(3, 3, 1.2, 7, &latencyPair{P50: 1.5, P99: 7}),
			},
			want: []string{
				"## Parley cluster: one node and 3 nodes",
				"| 1 | 3 | 12,000 | 0 | 0 | 0 | 0 | 12,000 of 12,000 | 0.00 | 1.00 / 5.00 | – | – | – | 1.00 |",
				"| 3 | 3 | 12,000 | 0 | 0 | 0 | 0 | 12,000 of 12,000 | 0.00 | 1.20 / 6.00 | 1.20 / 6.00 | 1.50 / 6.50 | 10,800 (90%) | 1.00 |",
				"| p50 (ms) | 1.00 | 1.20 | 1.50 | 1.50× | +0.50 |",
				"| p99 (ms) | 5.00 | 6.00 | 6.50 | 1.30× | +1.50 |",
				"**Aim met**: cross-node p99 +1.50 ms",
			},
		},
		"too slow": {
			cluster: []parleyRun{run(1, 1, 1, 4, nil), run(3, 1, 1, 9, &latencyPair{P50: 2, P99: 9})},
			want:    []string{"**Aim not met**: cross-node p99 +5.00 ms"},
		},
		"lost": {
			cluster: func() []parleyRun {
				r := run(3, 1, 1, 4, &latencyPair{P50: 1, P99: 4})
				r.Lost = 2
				return []parleyRun{run(1, 1, 1, 4, nil), r}
			}(),
			want: []string{"**Aim not met**: cross-node p99 +0.00 ms", "2 lost, 0 duplicates, 0 gaps"},
		},
		"no cluster": {
			cluster: func() []parleyRun {
				r := run(3, 1, 1, 4, nil)
				r.CrossNodeDeliveries, r.Lost = 0, 3600
				return []parleyRun{run(1, 1, 1, 4, nil), r}
			}(),
			want: []string{"**No DM crossed nodes**"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			res := &results{Started: "2026-11-27T12:00:00Z", Settings: map[string]string{"repeat": "3"}, Cluster: tc.cluster}
			md := res.markdown()
			for _, want := range tc.want {
				if !strings.Contains(md, want) {
					t.Errorf("markdown lacks %q:\n%s", want, md)
				}
			}
		})
	}
}

func TestParleyListening(t *testing.T) {
	for name, line := range map[string]string{
		"single": `{"time":"…","level":"INFO","msg":"parley listening","mqtt":"127.0.0.1:40001","ws":"ws://127.0.0.1:40002/mqtt","http":"http://127.0.0.1:40003"}`,
		"node":   `{"time":"…","level":"INFO","msg":"parley listening","node":"n1","mqtt":"127.0.0.1:40001","ws":"ws://127.0.0.1:40002/mqtt","http":"http://127.0.0.1:40003","metrics":"http://127.0.0.1:40004"}`,
	} {
		m := parleyListening.FindStringSubmatch("{\"msg\":\"starting\"}\n" + line + "\n")
		if m == nil || m[1] != "127.0.0.1:40001" || m[2] != "http://127.0.0.1:40003" {
			t.Errorf("%s: %q", name, m)
		}
	}
}

// TestStartNATS starts the embedded NATS server the cluster section uses
// and speaks to it.
func TestStartNATS(t *testing.T) {
	ns, err := startNATS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.stop()
	addr := strings.TrimPrefix(ns.url, "nats://")
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "INFO ") || !strings.Contains(line, `"jetstream":true`) {
		t.Errorf("greeting %q, %v", line, err)
	}
}

func TestGCMem(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/heap", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") != "1" {
			t.Error("no gc=1")
		}
		fmt.Fprint(w, "heap profile: 1: 2 [3: 4] @ heap/1048576\n\n# runtime.MemStats\n# Alloc = 10\n# HeapInuse = 12345\n# Stack = 6789 / 9999\n")
	})
	mux.HandleFunc("/debug/pprof/goroutine", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "goroutine profile: total 42\n1 @ 0x1\n")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer http.DefaultClient.CloseIdleConnections()
	m, err := gcMem(context.Background(), srv.URL)
	if err != nil || m != (goMem{HeapInuse: 12345, StackInuse: 6789, Goroutines: 42}) {
		t.Errorf("gcMem = %+v, %v", m, err)
	}
}

func TestCPUSeconds(t *testing.T) {
	if v, err := cpuSeconds(os.Getpid()); err != nil || v < 0 {
		t.Errorf("cpuSeconds = %v, %v", v, err)
	}
	if _, err := cpuSeconds(-1); err == nil {
		t.Error("no error for a missing process")
	}
}

func TestFlags(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string // error text; empty: valid
	}{
		"defaults":       {nil, ""},
		"quick":          {[]string{"-quick", "-only", "raw,idle"}, ""},
		"bad section":    {[]string{"-only", "raw,nope"}, `unknown section "nope"`},
		"bad source":     {[]string{"-source", "127.0.0.2,x"}, `"x" is not an IP address`},
		"bad repeat":     {[]string{"-repeat", "0"}, "-repeat must be at least 1"},
		"extra argument": {[]string{"extra"}, "unexpected arguments"},
		"cluster":        {[]string{"-quick", "-only", "cluster", "-cluster-nats", "nats://127.0.0.1:4222"}, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			case tc.want == "" && name == "quick" && (o.idleConns != 500 || !o.only["idle"] || o.only["dm"]):
				t.Errorf("options %+v", o)
			case name == "defaults" && !o.only["cluster"]:
				t.Error("the cluster section is not on by default")
			case name == "cluster" && (!o.only["cluster"] || o.only["raw"] || o.clusterNATS != "nats://127.0.0.1:4222" || o.parleyDur != time.Second):
				t.Errorf("options %+v", o)
			}
		})
	}
}
