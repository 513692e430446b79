package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// results is everything one bench run measured; it is written as JSON and
// rendered as Markdown.
type results struct {
	Started  string            `json:"started"`
	Elapsed  float64           `json:"elapsed_s"`
	Env      environment       `json:"environment"`
	Settings map[string]string `json:"settings"`
	Raw      []rawRun          `json:"raw,omitempty"`
	DM       []parleyRun       `json:"dm,omitempty"`
	Group    []parleyRun       `json:"group,omitempty"`
	Search   []searchResult    `json:"dm_rate_search,omitempty"`
	Idle     []idleRun         `json:"idle,omitempty"`
	Cluster  []parleyRun       `json:"cluster,omitempty"` // dm on one node (Nodes 1) and on a cluster
	Notes    []string          `json:"notes,omitempty"`
}

type environment struct {
	Git       string  `json:"git"`
	Go        string  `json:"go"`
	CPUs      int     `json:"cpus"`
	Kernel    string  `json:"kernel"`
	Mosquitto string  `json:"mosquitto"`
	FileLimit string  `json:"ulimit_n"`
	LoadStart float64 `json:"load1_start"`
	LoadEnd   float64 `json:"load1_end"`
}

// rawRun is one raw run against one broker.
type rawRun struct {
	Broker     string  `json:"broker"`
	QoS        int     `json:"qos"`
	Mode       string  `json:"mode"` // throughput (offered more than a broker takes) or latency (fixed rate)
	Rep        int     `json:"rep"`
	Rate       float64 `json:"rate"`
	Load1      float64 `json:"load1"`
	Sent       int64   `json:"sent"`
	Delivered  int64   `json:"delivered"`
	Lost       int64   `json:"lost"`
	Errors     int64   `json:"errors"`
	Throughput float64 `json:"throughput"` // delivered per second, first send to last delivery
	P50        float64 `json:"delivery_p50_ms"`
	P99        float64 `json:"delivery_p99_ms"`
	AckP99     float64 `json:"puback_p99_ms,omitempty"`
}

func (r rawRun) String() string {
	return fmt.Sprintf("%.0f msg/s, p50 %.2f ms, p99 %.2f ms, lost %d of %d, errors %d", r.Throughput, r.P50, r.P99, r.Lost, r.Sent, r.Errors)
}

type latencyPair struct {
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
}

// parleyRun is one dm or group run.
type parleyRun struct {
	Workload         string      `json:"workload"`
	Store            string      `json:"store"`
	Rep              int         `json:"rep"` // 0: a rate-search step
	Rate             float64     `json:"rate"`
	Users            int         `json:"users,omitempty"`
	Groups           int         `json:"groups,omitempty"`
	Members          int         `json:"members,omitempty"`
	Load1            float64     `json:"load1"`
	Sent             int64       `json:"sent"`
	Acked            int64       `json:"acked"`
	Refused          int64       `json:"refused"`
	Shed             int64       `json:"shed"`
	Delivered        int64       `json:"delivered"`
	Lost             int64       `json:"lost"`
	Duplicates       int64       `json:"duplicates"`
	Gaps             int64       `json:"gaps"`
	Reordered        int64       `json:"reordered"` // inbox entries delivered after a higher seq
	Receipts         int64       `json:"receipts"`
	ReceiptsExpected int64       `json:"receipts_expected"`
	ReceiptsPartial  int64       `json:"receipts_partial,omitempty"`
	Throughput       float64     `json:"throughput"` // deliveries per second
	Ack              latencyPair `json:"puback"`
	Delivery         latencyPair `json:"delivery"`
	Receipt          latencyPair `json:"receipt"`
	Errors           int64       `json:"errors"`
	Warnings         []string    `json:"warnings,omitempty"`
	// Several nodes (the cluster section): delivery again, split by whether
	// the recipient was connected to the sender's node or to another one.
	Nodes               int          `json:"nodes,omitempty"`
	SameNode            *latencyPair `json:"same_node,omitempty"`
	CrossNode           *latencyPair `json:"cross_node,omitempty"`
	SameNodeDeliveries  int64        `json:"same_node_deliveries,omitempty"`
	CrossNodeDeliveries int64        `json:"cross_node_deliveries,omitempty"`
}

func (r parleyRun) String() string {
	return fmt.Sprintf("sent %d, lost %d, dup %d, gaps %d, reordered %d, p99 puback %.1f / delivery %.1f / receipt %.1f ms, %.0f deliveries/s",
		r.Sent, r.Lost, r.Duplicates, r.Gaps, r.Reordered, r.Ack.P99, r.Delivery.P99, r.Receipt.P99, r.Throughput)
}

// clusterString is String for the cluster section: with the same-node and
// cross-node latencies.
func (r parleyRun) clusterString() string {
	s := fmt.Sprintf("sent %d, lost %d, dup %d, gaps %d, reordered %d, p50/p99 delivery %.2f/%.2f ms",
		r.Sent, r.Lost, r.Duplicates, r.Gaps, r.Reordered, r.Delivery.P50, r.Delivery.P99)
	if r.SameNode != nil {
		s += fmt.Sprintf(", same node %.2f/%.2f ms", r.SameNode.P50, r.SameNode.P99)
	}
	if r.CrossNode != nil {
		s += fmt.Sprintf(", cross node %.2f/%.2f ms (%d deliveries)", r.CrossNode.P50, r.CrossNode.P99, r.CrossNodeDeliveries)
	}
	return s
}

// passes says whether a dm run meets the search's target: everything sent
// was stored and delivered, once, and the p99 delivery is under target ms.
func (r parleyRun) passes(target float64) bool {
	return r.Sent > 0 && r.Acked == r.Sent && r.Shed == 0 && r.Lost == 0 && r.Duplicates == 0 && r.Gaps == 0 &&
		r.Delivery.P99 < target
}

type searchResult struct {
	Store        string       `json:"store"`
	Target       float64      `json:"target_p99_ms"`
	Users        int          `json:"users"`
	Duration     float64      `json:"duration_s"` // of each step
	Rate         float64      `json:"rate"`       // highest rate found (0: none)
	MedianP99    float64      `json:"median_p99"` // of the confirming runs
	Ceiling      float64      `json:"ceiling"`    // lowest failing rate tried (0: none failed)
	ConfirmLoads []float64    `json:"confirm_load1"`
	Steps        []searchStep `json:"steps"`
}

type searchStep struct {
	Rate  float64 `json:"rate"`
	P99   float64 `json:"p99_ms"`
	Lost  int64   `json:"lost"`
	Pass  bool    `json:"pass"`
	Load1 float64 `json:"load1"`
}

type idleRun struct {
	Broker       string   `json:"broker"`
	Label        string   `json:"label"`
	Conns        int      `json:"conns"`
	Sources      int      `json:"source_addresses,omitempty"`
	Established  int64    `json:"established"`
	Failed       int64    `json:"failed"`
	Load1        float64  `json:"load1"`
	Hold         float64  `json:"hold_s"`
	RSSBefore    int64    `json:"rss_before_bytes"`
	RSSAfterRamp int64    `json:"rss_after_ramp_bytes"`
	RSSAfterHold int64    `json:"rss_after_hold_bytes"`
	RSSPerConn   float64  `json:"rss_per_conn_bytes"`
	GoBefore     *goMem   `json:"go_before,omitempty"`
	GoHold       *goMem   `json:"go_hold,omitempty"`
	GoPerConn    float64  `json:"go_heap_stack_per_conn_bytes,omitempty"` // after a GC
	CPUSeconds   float64  `json:"cpu_s"`
	CPUWindow    float64  `json:"cpu_window_s"`
	CPUPercent   float64  `json:"cpu_percent"` // of one core
	ConnectP99   float64  `json:"connect_p99_ms"`
	Warnings     []string `json:"warnings,omitempty"`
}

func (r idleRun) String() string {
	return fmt.Sprintf("%d established, RSS %s/conn, Go heap+stack after GC %s/conn, idle CPU %.1f%% of a core",
		r.Established, kib(r.RSSPerConn), kib(r.GoPerConn), r.CPUPercent)
}

func kib(b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f KiB", b/1024)
}

// write saves the Markdown and the JSON under dir, named after the start time.
func (res *results) write(dir, md string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := filepath.Join(dir, strings.NewReplacer(":", "", "T", "-", "Z", "").Replace(res.Started))
	if err := os.WriteFile(base+".md", []byte(md), 0o644); err != nil {
		return err
	}
	if err := writeJSON(base+".json", res); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "parley-bench: wrote %s.md and %s.json\n", base, base)
	return nil
}

// loads renders the load averages of a set of runs as "min–max".
func loads(v []float64) string {
	if len(v) == 0 {
		return "–"
	}
	lo, hi := slices.Min(v), slices.Max(v)
	if math.Abs(hi-lo) < 0.005 {
		return fmt.Sprintf("%.2f", lo)
	}
	return fmt.Sprintf("%.2f–%.2f", lo, hi)
}

func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func num(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	s := fmt.Sprintf("%.0f", v)
	// Thousands separators, for reading.
	var out []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	return string(out)
}

func ms(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// rawCell gathers the runs of one broker, QoS and mode.
type rawCell struct {
	runs []rawRun
}

func (c rawCell) median(f func(rawRun) float64) float64 {
	var v []float64
	for _, r := range c.runs {
		v = append(v, f(r))
	}
	return median(v)
}

func (c rawCell) loads() []float64 {
	var v []float64
	for _, r := range c.runs {
		v = append(v, r.Load1)
	}
	return v
}

// rawBrokers are the raw table's columns: Parley, the ones Parley's ratios
// are against, and Parley with its former per-client queue.
var rawBrokers = []struct{ name, label string }{
	{"parley", "Parley"}, {"mochi", "bare mochi"}, {"mosquitto", "Mosquitto"}, {"parley-1024", "Parley, queue 1024"},
}

func (res *results) rawCell(broker string, qos int, mode string) rawCell {
	var c rawCell
	for _, r := range res.Raw {
		if r.Broker == broker && r.QoS == qos && r.Mode == mode {
			c.runs = append(c.runs, r)
		}
	}
	return c
}

func (res *results) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Parley side by side: bare mochi-mqtt and Mosquitto\n\n")
	e := res.Env
	p("Run %s, %.0f s. Machine: %d CPUs, Linux %s, %s, %s, `ulimit -n` %s. Source: `%s`.\n\n",
		res.Started, res.Elapsed, e.CPUs, e.Kernel, e.Go, e.Mosquitto, e.FileLimit, e.Git)
	p("1-minute load average: %.2f at the start, %.2f at the end. Every figure is the median of %s runs unless it says otherwise; "+
		"**load** is the 1-minute load average as those runs started (min–max). The load tester runs on the same machine as the brokers, "+
		"so at saturation it competes with them for the two cores.\n\n", e.LoadStart, e.LoadEnd, res.Settings["repeat"])
	if res.Settings["quick"] == "true" {
		p("**Quick mode: short runs that check the bench itself; the figures mean little.**\n\n")
	}

	if len(res.Raw) > 0 {
		p("## Raw MQTT\n\n")
		p("%s. Throughput: %s, delivered messages per second from the first send to the last delivery. "+
			"Latency: scheduled send → delivery at %s (open loop, coordinated omission corrected). "+
			"Parley runs with its hooks, as its administrator on plain topics (plain topics are administrators' only). Mosquitto: %s.\n\n",
			res.Settings["raw"], res.Settings["raw_throughput_rate"], res.Settings["raw_latency_rate"], res.Settings["mosquitto"])
		p("| | Parley | bare mochi | Mosquitto | Parley / Mosquitto | Parley / bare mochi | Parley, queue 1024 | load |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
		rows := []struct {
			label string
			qos   int
			mode  string
			f     func(rawRun) float64
			fmt   func(float64) string
		}{
			{"QoS 0 throughput (msg/s)", 0, modeThroughput, func(r rawRun) float64 { return r.Throughput }, num},
			{"QoS 1 throughput (msg/s)", 1, modeThroughput, func(r rawRun) float64 { return r.Throughput }, num},
			{"QoS 0 p99 delivery (ms)", 0, modeLatency, func(r rawRun) float64 { return r.P99 }, ms},
			{"QoS 1 p99 delivery (ms)", 1, modeLatency, func(r rawRun) float64 { return r.P99 }, ms},
			{"QoS 0 p50 delivery (ms)", 0, modeLatency, func(r rawRun) float64 { return r.P50 }, ms},
			{"QoS 1 p50 delivery (ms)", 1, modeLatency, func(r rawRun) float64 { return r.P50 }, ms},
			{"QoS 1 p99 PUBACK (ms)", 1, modeLatency, func(r rawRun) float64 { return r.AckP99 }, ms},
		}
		for _, row := range rows {
			var v [4]float64
			var ls []float64
			for i, br := range rawBrokers {
				c := res.rawCell(br.name, row.qos, row.mode)
				v[i] = c.median(row.f)
				ls = append(ls, c.loads()...)
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", row.label, row.fmt(v[0]), row.fmt(v[1]), row.fmt(v[2]),
				ratio(v[0], v[2]), ratio(v[0], v[1]), row.fmt(v[3]), loads(ls))
		}
		p("\nRatios: above 1× is more throughput, or more latency, than the other broker. *Parley, queue 1024*: Parley with " +
			"`limits.writes_pending` at its former default, 1024 (now 256).\n\n")
		var lossLines []string
		for _, qos := range []int{0, 1} {
			for _, mode := range []string{modeThroughput, modeLatency} {
				for _, br := range rawBrokers {
					var lost, sent, errs int64
					for _, r := range res.rawCell(br.name, qos, mode).runs {
						lost, sent, errs = lost+r.Lost, sent+r.Sent, errs+r.Errors
					}
					if lost > 0 || errs > 0 {
						lossLines = append(lossLines, fmt.Sprintf("- %s, QoS %d %s runs: %s of %s messages lost (%.2f%%), %d errors",
							br.label, qos, mode, num(float64(lost)), num(float64(sent)), 100*float64(lost)/float64(max(sent, 1)), errs))
					}
				}
			}
		}
		if len(lossLines) > 0 {
			p("Loss (summed over the runs; at saturation a broker drops what its queues cannot hold: bare mochi a full "+
				"client queue (8192), Mosquitto beyond `max_queued_messages` (1000), Parley's plain topics a full queue "+
				"(`limits.writes_pending`, 256; inbox topics disconnect the subscriber instead, which then catches up). "+
				"Throughput runs end 3 s after the schedule: QoS 1 messages still queued then count as lost too):\n\n%s\n\n",
				strings.Join(lossLines, "\n"))
		} else {
			p("No message was lost in any raw run.\n\n")
		}
	}

	for _, sec := range []struct {
		title string
		runs  []parleyRun
	}{{"Parley direct messages (dm)", res.DM}, {"Parley groups", res.Group}} {
		if len(sec.runs) == 0 {
			continue
		}
		p("## %s\n\n", sec.title)
		r0 := sec.runs[0]
		if r0.Workload == "dm" {
			p("%d users, each connected once (MQTT 5, persistent session, subscribed to its inbox), sending QoS 1 DMs of 100 B to random peers at %s/s in total. "+
				"Each DM is stored twice (recipient's inbox and sender's copy) before its PUBACK, then delivered to the recipient and back to the sender, "+
				"and the recipient's PUBACK brings a stored delivered receipt to the sender.\n\n", r0.Users, num(r0.Rate))
		} else {
			p("%d groups of %d members (MQTT 5, each subscribed to its group's inbox), sending QoS 1 messages of 100 B into their groups at %s/s in total: "+
				"each message is stored once and delivered to the %d other members and back to its sender; aggregated delivered receipts come back to the sender.\n\n",
				r0.Groups, r0.Members, num(r0.Rate), r0.Members-1)
		}
		p("| store | runs | sent | lost | duplicates | gaps | out of order | receipts | PUBACK p50 / p99 (ms) | delivery p50 / p99 (ms) | receipt p99 (ms) | deliveries/s | load |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, st := range stores {
			var runs []parleyRun
			for _, r := range sec.runs {
				if r.Store == st {
					runs = append(runs, r)
				}
			}
			if len(runs) == 0 {
				continue
			}
			med := func(f func(parleyRun) float64) float64 {
				var v []float64
				for _, r := range runs {
					v = append(v, f(r))
				}
				return median(v)
			}
			var sent, lost, dup, gaps, reord, rc, rcExp, rcPart int64
			var ls []float64
			for _, r := range runs {
				sent, lost, dup, gaps, reord = sent+r.Sent, lost+r.Lost, dup+r.Duplicates, gaps+r.Gaps, reord+r.Reordered
				rc, rcExp, rcPart = rc+r.Receipts, rcExp+r.ReceiptsExpected, rcPart+r.ReceiptsPartial
				ls = append(ls, r.Load1)
			}
			receipts := fmt.Sprintf("%s of %s", num(float64(rc)), num(float64(rcExp)))
			if rcPart > 0 {
				receipts += fmt.Sprintf(" (%d partial)", rcPart)
			}
			p("| %s | %d | %s | %d | %d | %d | %d | %s | %s / %s | %s / %s | %s | %s | %s |\n", storeLabel(st), len(runs), num(float64(sent)),
				lost, dup, gaps, reord, receipts,
				ms(med(func(r parleyRun) float64 { return r.Ack.P50 })), ms(med(func(r parleyRun) float64 { return r.Ack.P99 })),
				ms(med(func(r parleyRun) float64 { return r.Delivery.P50 })), ms(med(func(r parleyRun) float64 { return r.Delivery.P99 })),
				ms(med(func(r parleyRun) float64 { return r.Receipt.P99 })), num(med(func(r parleyRun) float64 { return r.Throughput })), loads(ls))
		}
		p("\nCounts are summed over the runs. *Out of order*: inbox entries that arrived after an entry with a higher seq of the same inbox " +
			"(no loss: clients order by seq).\n")
		if r0.Workload == "group" {
			p("A group receipt counts how many other members have a batch of messages; *partial* counts messages never reported as delivered to all, " +
				"though all got them: Parley reports a batch with its lowest count.\n")
		}
		p("\n")
	}

	if len(res.Search) > 0 {
		p("## Highest DM rate with p99 publish → delivery under %s ms\n\n", ms(res.Search[0].Target))
		p("dm workload, %d users, runs of %.0f s; a rate passes when nothing is lost, duplicated or refused and the p99 publish → delivery is under the target. "+
			"Doubling from 1,000/s, then two geometric bisections, then %s runs at the rate found, whose median must pass (else 15%% lower, once). "+
			"Every DM is durable: stored (twice) before its PUBACK.\n\n",
			res.Search[0].Users, res.Search[0].Duration, res.Settings["repeat"])
		p("| store | highest rate (msg/s) | median p99 at it (ms) | lowest failing rate tried | steps (rate: p99 ms, pass) | load |\n|---|---:|---:|---:|---|---|\n")
		for _, s := range res.Search {
			var steps []string
			var ls []float64
			for _, st := range s.Steps {
				mark := "✗"
				if st.Pass {
					mark = "✓"
				}
				steps = append(steps, fmt.Sprintf("%s: %s %s", num(st.Rate), ms(st.P99), mark))
				ls = append(ls, st.Load1)
			}
			rate, p99 := num(s.Rate), ms(s.MedianP99)
			if s.Rate == 0 {
				rate, p99 = "none found", "–"
			}
			ceiling := num(s.Ceiling)
			if s.Ceiling == 0 {
				ceiling = "none failed"
			}
			p("| %s | %s | %s | %s | %s | %s |\n", storeLabel(s.Store), rate, p99, ceiling, strings.Join(steps, ", "), loads(ls))
		}
		p("\n")
	}

	if len(res.Idle) > 0 {
		p("## Idle connections\n\n")
		p("MQTT 5 connections opened at 2,000/s, keep-alive 30 s, each subscribed (Parley: users with persistent sessions, subscribed to their inboxes; "+
			"bare mochi and Mosquitto: a topic each), held %.0f s. RSS per connection: (RSS after the ramp − before) / connections. "+
			"Go heap + stacks: `HeapInuse + StackInuse` right after a forced GC during the hold, minus the same before the ramp. "+
			"Idle CPU: the broker's CPU time over the hold (PINGREQs included), in %% of one core. One run each.\n\n", res.Idle[0].Hold)
		p("| broker | connections | RSS per conn | Go heap + stacks per conn, after GC | goroutines | idle CPU (%% of a core) | connect p99 (ms) | load |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---|\n")
		for _, r := range res.Idle {
			conns := num(float64(r.Established))
			if r.Established != int64(r.Conns) {
				conns += fmt.Sprintf(" of %s", num(float64(r.Conns)))
			}
			if r.Sources > 0 {
				conns += fmt.Sprintf(" (%d source addresses)", r.Sources)
			}
			gor := "–"
			if r.GoHold != nil {
				gor = num(float64(r.GoHold.Goroutines))
			}
			p("| %s | %s | %s | %s | %s | %.1f | %s | %.2f |\n", r.Label, conns, kib(r.RSSPerConn), kib(r.GoPerConn), gor, r.CPUPercent, ms(r.ConnectP99), r.Load1)
		}
		p("\n")
		for _, r := range res.Idle {
			for _, w := range r.Warnings {
				p("- %s, %d connections: %s\n", r.Label, r.Conns, w)
			}
		}
		p("\n")
	}

	if len(res.Cluster) > 0 {
		res.clusterMarkdown(p)
	}

	var warns []string
	for _, r := range append(append(slices.Clone(res.DM), res.Group...), res.Cluster...) {
		what := r.Workload + " " + r.Store
		if r.Nodes > 0 {
			what = fmt.Sprintf("cluster section, %d node(s),", r.Nodes)
		}
		for _, w := range r.Warnings {
			warns = append(warns, fmt.Sprintf("- %s #%d: %s", what, r.Rep, w))
		}
	}
	if len(warns) > 0 || len(res.Notes) > 0 {
		p("## Warnings and notes\n\n")
		for _, n := range res.Notes {
			p("- %s\n", n)
		}
		p("%s\n", strings.Join(warns, "\n"))
	}
	return b.String()
}

// clusterMarkdown renders the cluster section: the runs on one node and on
// the cluster, then cross-node publish → delivery against one node's, and
// whether the aim is met.
func (res *results) clusterMarkdown(p func(format string, args ...any)) {
	byNodes := map[int][]parleyRun{}
	var sizes []int
	for _, r := range res.Cluster {
		if byNodes[r.Nodes] == nil {
			sizes = append(sizes, r.Nodes)
		}
		byNodes[r.Nodes] = append(byNodes[r.Nodes], r)
	}
	slices.Sort(sizes)
	n := sizes[len(sizes)-1]
	r0 := res.Cluster[0]
	p("## Parley cluster: one node and %d nodes\n\n", n)
	p("dm workload on Postgres, %d users (MQTT 5, persistent sessions), %s DMs/s in total, on one Parley node and on a cluster of %d Parley processes on this machine "+
		"that share one database and are joined through NATS (%s); %s. Publish → delivery is split by whether the recipient is connected to the sender's node "+
		"(*same node*) or to another one (*cross node*). Aim: a DM that crosses nodes takes at most %s ms more at p99 than on one node, at 1,000 DMs/s, "+
		"with nothing lost, duplicated or missing.\n\n",
		r0.Users, num(r0.Rate), n, res.Settings["cluster_nats"], res.Settings["cluster"], ms(clusterAim))
	p("| nodes | runs | sent | lost | duplicates | gaps | out of order | receipts | PUBACK p99 (ms) | delivery p50 / p99 (ms) | same node p50 / p99 (ms) | cross node p50 / p99 (ms) | cross-node deliveries | load |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	type sums struct{ sent, lost, dup, gaps, reord, rc, rcExp, same, cross int64 }
	total := map[int]sums{}
	for _, k := range sizes {
		runs := byNodes[k]
		var t sums
		var ls []float64
		for _, r := range runs {
			t.sent, t.lost, t.dup, t.gaps, t.reord = t.sent+r.Sent, t.lost+r.Lost, t.dup+r.Duplicates, t.gaps+r.Gaps, t.reord+r.Reordered
			t.rc, t.rcExp = t.rc+r.Receipts, t.rcExp+r.ReceiptsExpected
			t.same, t.cross = t.same+r.SameNodeDeliveries, t.cross+r.CrossNodeDeliveries
			ls = append(ls, r.Load1)
		}
		total[k] = t
		pair := func(f func(parleyRun) *latencyPair) string {
			if k == 1 {
				return "–"
			}
			return ms(medianOf(runs, func(r parleyRun) float64 { return pairP(f(r), 50) })) + " / " +
				ms(medianOf(runs, func(r parleyRun) float64 { return pairP(f(r), 99) }))
		}
		cross := "–"
		if k > 1 {
			cross = fmt.Sprintf("%s (%.0f%%)", num(float64(t.cross)), 100*float64(t.cross)/float64(max(t.same+t.cross, 1)))
		}
		p("| %d | %d | %s | %d | %d | %d | %d | %s of %s | %s | %s / %s | %s | %s | %s | %s |\n", k, len(runs), num(float64(t.sent)),
			t.lost, t.dup, t.gaps, t.reord, num(float64(t.rc)), num(float64(t.rcExp)),
			ms(medianOf(runs, func(r parleyRun) float64 { return r.Ack.P99 })),
			ms(medianOf(runs, func(r parleyRun) float64 { return r.Delivery.P50 })), ms(medianOf(runs, func(r parleyRun) float64 { return r.Delivery.P99 })),
			pair(func(r parleyRun) *latencyPair { return r.SameNode }), pair(func(r parleyRun) *latencyPair { return r.CrossNode }),
			cross, loads(ls))
	}
	p("\nCounts are summed over the runs, latencies are medians of the runs' figures; one node and the cluster ran in turn.\n\n")
	one, many := byNodes[1], byNodes[n]
	if len(one) == 0 || n == 1 {
		return
	}
	var d [2]struct{ one, same, cross float64 }
	for i, q := range []float64{50, 99} {
		d[i].one = medianOf(one, func(r parleyRun) float64 { return pairP(&r.Delivery, q) })
		d[i].same = medianOf(many, func(r parleyRun) float64 { return pairP(r.SameNode, q) })
		d[i].cross = medianOf(many, func(r parleyRun) float64 { return pairP(r.CrossNode, q) })
	}
	p("| publish → delivery | 1 node | %d nodes, same node | %d nodes, cross node | cross node / 1 node | added (ms) |\n|---|---:|---:|---:|---:|---:|\n", n, n)
	for i, q := range []string{"p50", "p99"} {
		p("| %s (ms) | %s | %s | %s | %s | %s |\n", q, ms(d[i].one), ms(d[i].same), ms(d[i].cross), ratio(d[i].cross, d[i].one), signedMs(d[i].cross-d[i].one))
	}
	p("\n*Same node* shows what running %d nodes on this machine costs by itself (they share its cores with the load tester); "+
		"*cross node* adds the hop through NATS.\n", n)
	t := total[n]
	added := d[1].cross - d[1].one
	switch {
	case t.cross == 0:
		p("\n**No DM crossed nodes**: the nodes did not deliver to each other's users (was `parley` built with clustering, `PARLEY_CLUSTER_NATS_URL`?). Aim not met.\n\n")
	default:
		met := t.lost == 0 && t.dup == 0 && t.gaps == 0 && added <= clusterAim
		verdict := "not met"
		if met {
			verdict = "met"
		}
		p("\n**Aim %s**: cross-node p99 %s ms against one node's (aim: at most +%s ms); in the cluster runs %d lost, %d duplicates, %d gaps.",
			verdict, signedMs(added), ms(clusterAim), t.lost, t.dup, t.gaps)
		if r0.Rate != 1000 {
			p(" (The aim is stated at 1,000 DMs/s; these runs were at %s/s.)", num(r0.Rate))
		}
		p("\n\n")
	}
}

// pairP returns a latency pair's p50 or p99, NaN for none.
func pairP(l *latencyPair, q float64) float64 {
	switch {
	case l == nil:
		return math.NaN()
	case q == 50:
		return l.P50
	}
	return l.P99
}

// medianOf returns the median of f over the runs, leaving NaNs out.
func medianOf(runs []parleyRun, f func(parleyRun) float64) float64 {
	var v []float64
	for _, r := range runs {
		if x := f(r); !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	return median(v)
}

// signedMs renders a difference in milliseconds with its sign.
func signedMs(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%+.2f", v)
}
