package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"time"

	"github.com/parleychat/parley/loadtest"
	"github.com/parleychat/parley/loadtest/report"
)

// The raw workload's shape: pairs, so that every broker's fan-out is the same
// and the load tester's subscribers share the work evenly.
const rawPairs = 4

// rawQoS1Inflight bounds the QoS 1 publishes awaiting their PUBACK per
// publisher in throughput runs.
const rawQoS1Inflight = 20

// runRaw runs the raw workloads against Parley (as its administrator, on
// plain topics), bare mochi and Mosquitto, interleaved so that other load on
// the machine hits all of them alike. A second Parley runs with the per-client
// queue it had before (1024): a smaller queue drops more of a plain-topic
// burst, and the table shows by how much.
func runRaw(ctx context.Context, o *options, res *results) error {
	var brokers []*broker
	defer func() {
		for _, b := range brokers {
			b.stop()
		}
	}()
	p, err := startParley(o, "parley", "Parley", false)
	if err != nil {
		return err
	}
	brokers = append(brokers, p)
	p1024, err := startParley(o, "parley-1024", "Parley, queue 1024", false, "PARLEY_LIMITS_WRITES_PENDING=1024")
	if err != nil {
		return err
	}
	brokers = append(brokers, p1024)
	m, err := startMochi(o)
	if err != nil {
		return err
	}
	brokers = append(brokers, m)
	q, err := startMosquitto(o)
	if err != nil {
		return err
	}
	brokers = append(brokers, q)
	for rep := 1; rep <= o.repeat; rep++ {
		for _, qos := range []byte{0, 1} {
			for _, mode := range []string{modeThroughput, modeLatency} {
				for _, b := range brokers {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					r, err := rawOnce(ctx, o, b, qos, mode, rep)
					if err != nil {
						return err
					}
					res.Raw = append(res.Raw, r)
				}
			}
		}
	}
	return nil
}

const (
	modeThroughput = "throughput"
	modeLatency    = "latency"
)

func rawOnce(ctx context.Context, o *options, b *broker, qos byte, mode string, rep int) (rawRun, error) {
	rate := o.rawRates[qos]
	if mode == modeLatency {
		rate = o.latRates[qos]
	}
	cfg := loadtest.Config{
		Workload: loadtest.WorkloadRaw, Brokers: []string{b.mqtt}, Protocol: 3, QoS: qos,
		Publishers: rawPairs, Subscribers: rawPairs, Topics: rawPairs, Size: 64,
		Rate: rate, Duration: o.rawDur, Drain: 3 * time.Second,
		Username: b.user, Password: b.pass, Logger: o.log,
	}
	if qos == 1 && mode == modeThroughput {
		// At most 20 QoS 1 publishes in flight per publisher, as
		// mosquitto_pub: the publishers go as fast as the broker
		// acknowledges, and no broker's subscriber queue overflows (with
		// 1024 in flight, every broker dropped 10–35% here).
		cfg.MaxInflight = rawQoS1Inflight
	}
	r := rawRun{Broker: b.name, QoS: int(qos), Mode: mode, Rep: rep, Rate: rate, Load1: loadAvg()}
	rep2, err := loadtest.Run(ctx, cfg)
	if rep2 == nil {
		return r, fmt.Errorf("raw qos %d %s against %s: %w", qos, mode, b.label, err)
	}
	m := rep2.Messages
	r.Sent, r.Delivered, r.Throughput = m.Sent, m.Delivered, m.Throughput
	r.Lost, r.Errors = rep2.Lost(), errorCount(rep2)
	if d, ok := rep2.Latency[report.LatencyDelivery]; ok {
		r.P50, r.P99 = d.P50, d.P99
	}
	if a, ok := rep2.Latency[report.LatencyAck]; ok {
		r.AckP99 = a.P99
	}
	o.progress("raw qos %d %-10s %-10s #%d: %s", qos, mode, b.name, rep, r)
	return r, nil
}

func errorCount(rep *report.Report) int64 {
	var n int64
	for _, v := range rep.Errors {
		n += v
	}
	return n
}

// parleys starts the Parley nodes of the dm, group and search sections, one
// per store, each the first time it is needed.
type parleys struct {
	o     *options
	nodes map[string]*broker
}

func (ps *parleys) get(store string) (*broker, error) {
	if b := ps.nodes[store]; b != nil {
		return b, nil
	}
	pg := store == storePostgres
	b, err := startParley(ps.o, "parley-"+store, storeLabel(store), pg)
	if err != nil {
		return nil, err
	}
	ps.nodes[store] = b
	return b, nil
}

func (ps *parleys) stop() {
	for _, b := range ps.nodes {
		b.stop()
	}
}

const (
	storeSQLite   = "sqlite"
	storePostgres = "postgres"
)

var stores = []string{storeSQLite, storePostgres}

func storeLabel(s string) string {
	if s == storePostgres {
		return "Parley (Postgres)"
	}
	return "Parley (embedded SQLite)"
}

// parleyOnce runs the dm or group workload against a Parley node, or
// against the nodes of a cluster (which share their administrator).
func parleyOnce(ctx context.Context, o *options, nodes []*broker, store string, cfg loadtest.Config, rep int) (parleyRun, error) {
	for _, b := range nodes {
		cfg.Brokers, cfg.HTTP = append(cfg.Brokers, b.mqtt), append(cfg.HTTP, b.http)
	}
	cfg.Admin, cfg.Logger = nodes[0].user+":"+nodes[0].pass, o.log
	if cfg.Duration == 0 {
		cfg.Duration = o.parleyDur
	}
	cfg.Drain = 5 * time.Second
	r := parleyRun{Workload: cfg.Workload, Store: store, Rep: rep, Rate: cfg.Rate, Users: cfg.Users,
		Groups: cfg.Groups, Members: cfg.Members, Load1: loadAvg()}
	rp, err := loadtest.Run(ctx, cfg)
	if rp == nil {
		return r, fmt.Errorf("%s on %s: %w", cfg.Workload, store, err)
	}
	if err != nil {
		r.Warnings = append(r.Warnings, err.Error())
	}
	m := rp.Messages
	r.Sent, r.Acked, r.Refused, r.Shed = m.Sent, m.Acked, m.Refused, m.Shed
	r.Delivered, r.Duplicates, r.Throughput = m.Delivered, m.Duplicates, m.Throughput
	r.Lost = rp.Lost()
	if a := rp.Accounting; a != nil {
		r.Duplicates = max(r.Duplicates, a.Duplicates)
	}
	if in := rp.Inboxes; in != nil {
		r.Gaps, r.Reordered = in.Gaps, in.Reordered
	}
	if rc := rp.Receipts; rc != nil {
		r.Receipts, r.ReceiptsExpected, r.ReceiptsPartial = rc.Received, rc.Expected, rc.Partial
	}
	for name, dst := range map[string]*latencyPair{
		report.LatencyAck: &r.Ack, report.LatencyDelivery: &r.Delivery, report.LatencyReceipt: &r.Receipt,
	} {
		if s, ok := rp.Latency[name]; ok {
			*dst = latencyPair{P50: s.P50, P99: s.P99}
		}
	}
	if s, ok := rp.Latency[report.LatencyDeliverySameNode]; ok {
		r.SameNode, r.SameNodeDeliveries = &latencyPair{P50: s.P50, P99: s.P99}, s.Count
	}
	if s, ok := rp.Latency[report.LatencyDeliveryCrossNode]; ok {
		r.CrossNode, r.CrossNodeDeliveries = &latencyPair{P50: s.P50, P99: s.P99}, s.Count
	}
	r.Errors = errorCount(rp)
	r.Warnings = append(r.Warnings, rp.Warnings...)
	return r, nil
}

func runDM(ctx context.Context, o *options, res *results) error {
	ps := &parleys{o: o, nodes: map[string]*broker{}}
	defer ps.stop()
	for _, store := range stores {
		b, err := ps.get(store)
		if err != nil {
			return err
		}
		for rep := 1; rep <= o.repeat; rep++ {
			r, err := parleyOnce(ctx, o, []*broker{b}, store, loadtest.Config{Workload: loadtest.WorkloadDM, Users: o.dmUsers, Rate: o.dmRate}, rep)
			if err != nil {
				return err
			}
			o.progress("dm %-8s #%d: %s", store, rep, r)
			res.DM = append(res.DM, r)
		}
	}
	return nil
}

// groupShape: 20 groups of 10; each message reaches 9 other members.
const groupCount, groupMembers = 20, 10

func runGroup(ctx context.Context, o *options, res *results) error {
	ps := &parleys{o: o, nodes: map[string]*broker{}}
	defer ps.stop()
	for _, store := range stores {
		b, err := ps.get(store)
		if err != nil {
			return err
		}
		for rep := 1; rep <= o.repeat; rep++ {
			cfg := loadtest.Config{Workload: loadtest.WorkloadGroup, Groups: groupCount, Members: groupMembers, Rate: o.dmRate / 5}
			r, err := parleyOnce(ctx, o, []*broker{b}, store, cfg, rep)
			if err != nil {
				return err
			}
			o.progress("group %-8s #%d: %s", store, rep, r)
			res.Group = append(res.Group, r)
		}
	}
	return nil
}

// runSearch looks, per store, for the highest DM rate at which nothing is
// lost and the p99 publish → delivery stays under the target: doubling from
// a start rate until a run fails, then two geometric bisections, then
// -repeat runs at the rate found, whose median must pass too (else it steps
// down by 15% once and confirms again). Steps are short runs (-quick: 1 s).
func runSearch(ctx context.Context, o *options, res *results) error {
	ps := &parleys{o: o, nodes: map[string]*broker{}}
	defer ps.stop()
	dur := 3 * time.Second
	if o.quick {
		dur = time.Second
	}
	for _, store := range stores {
		b, err := ps.get(store)
		if err != nil {
			return err
		}
		s := searchResult{Store: store, Target: o.searchTarget.Seconds() * 1000, Users: o.dmUsers, Duration: dur.Seconds()}
		try := func(rate float64, rep int) (parleyRun, bool, error) {
			cfg := loadtest.Config{Workload: loadtest.WorkloadDM, Users: o.dmUsers, Rate: math.Round(rate), Duration: dur}
			r, err := parleyOnce(ctx, o, []*broker{b}, store, cfg, rep)
			if err != nil {
				return r, false, err
			}
			ok := r.passes(s.Target)
			o.progress("search %-8s %6.0f/s: %v %s", store, rate, ok, r)
			s.Steps = append(s.Steps, searchStep{Rate: r.Rate, P99: r.Delivery.P99, Lost: r.Lost, Pass: ok, Load1: r.Load1})
			return r, ok, nil
		}
		lo, hi := 0.0, 0.0
		start, ceiling := 1000.0, 64000.0
		if o.quick {
			start, ceiling = 200, 400
		}
		for rate := start; rate <= ceiling; rate *= 2 {
			_, ok, err := try(rate, 0)
			if err != nil {
				return err
			}
			if !ok {
				hi = rate
				break
			}
			lo = rate
		}
		for rate := start / 2; lo == 0 && rate >= start/8; rate /= 2 { // even the start rate failed
			_, ok, err := try(rate, 0)
			if err != nil {
				return err
			}
			if ok {
				lo = rate
			} else {
				hi = rate
			}
		}
		for i := 0; i < 2 && lo > 0 && hi > 0 && !o.quick; i++ {
			mid := math.Sqrt(lo * hi)
			_, ok, err := try(mid, 0)
			if err != nil {
				return err
			}
			if ok {
				lo = mid
			} else {
				hi = mid
			}
		}
		for step := 0; lo > 0 && step < 2; step++ {
			var p99s, ls []float64
			var lost int64
			for rep := 1; rep <= o.repeat; rep++ {
				r, _, err := try(lo, rep)
				if err != nil {
					return err
				}
				p99s = append(p99s, r.Delivery.P99)
				lost += r.Lost
				ls = append(ls, r.Load1)
			}
			if med := median(p99s); med < s.Target && lost == 0 {
				s.Rate, s.MedianP99, s.ConfirmLoads = math.Round(lo), med, ls
				break
			}
			lo *= 0.85
		}
		s.Ceiling = hi
		res.Search = append(res.Search, s)
	}
	return nil
}

// runIdle holds idle connections on each broker (MQTT 5, each subscribed:
// Parley users to their inboxes with persistent sessions, the others to a
// topic of their own), and measures memory and CPU per connection; then the
// largest run Parley takes here, from several source addresses.
func runIdle(ctx context.Context, o *options, res *results) error {
	p, err := startParley(o, "parley-idle", "Parley", false)
	if err != nil {
		return err
	}
	defer p.stop()
	m, err := startMochi(o)
	if err != nil {
		return err
	}
	defer m.stop()
	q, err := startMosquitto(o)
	if err != nil {
		return err
	}
	defer q.stop()
	for _, b := range []*broker{p, m, q} {
		r, err := idleOnce(ctx, o, b, o.idleConns, nil)
		if err != nil {
			return err
		}
		res.Idle = append(res.Idle, r)
	}
	if o.maxConns > 0 {
		r, err := idleOnce(ctx, o, p, o.maxConns, o.sources)
		if err != nil {
			return err
		}
		res.Idle = append(res.Idle, r)
	}
	return nil
}

func idleOnce(ctx context.Context, o *options, b *broker, conns int, sources []net.IP) (idleRun, error) {
	r := idleRun{Broker: b.name, Label: b.label, Conns: conns, Sources: len(sources), Load1: loadAvg(), Hold: o.hold.Seconds()}
	cfg := loadtest.Config{
		Workload: loadtest.WorkloadConnections, Brokers: []string{b.mqtt}, Protocol: 5, Conns: conns, ConnRate: 2000,
		Settle: 3 * time.Second, Hold: o.hold, Subscribe: true, Sources: sources, PID: b.pid(), Logger: o.log,
		ConnectTimeout: 30 * time.Second,
	}
	if b.http != "" {
		// Parley: users with persistent sessions, subscribed to their inboxes.
		// The same ids every run: a later run reuses the users.
		cfg.HTTP, cfg.Admin, cfg.UserPrefix, cfg.UserPassword = []string{b.http}, b.user+":"+b.pass, "idle-", "idle-password"
	}
	if b.pprof != "" {
		gm, err := gcMem(ctx, b.pprof)
		if err != nil {
			return r, fmt.Errorf("idle %s: %w", b.label, err)
		}
		r.GoBefore = &gm
	}

	// Measure while the connections are held: first the Go heap after a
	// collection, then, from a second later (the collection's own work is
	// over), the CPU until the hold ends.
	phases := make(chan string, 16)
	cfg.OnPhase = func(p string) {
		select {
		case phases <- p:
		default:
		}
	}
	type sample struct {
		gm       *goMem
		gmErr    error
		cpu0     float64
		t0       time.Time
		cpu1     float64
		t1       time.Time
		measured bool
	}
	done := make(chan sample, 1)
	go func() {
		var s sample
		defer func() { done <- s }()
		for p := range phases {
			switch p {
			case "holding":
				if b.pprof != "" {
					gm, err := gcMem(ctx, b.pprof)
					s.gm, s.gmErr = &gm, err
				}
				time.Sleep(time.Second)
				s.cpu0, _ = cpuSeconds(b.pid())
				s.t0 = time.Now()
			case "closing":
				if !s.t0.IsZero() {
					s.cpu1, _ = cpuSeconds(b.pid())
					s.t1 = time.Now()
					s.measured = true
				}
				return
			}
		}
	}()
	rp, err := loadtest.Run(ctx, cfg)
	close(phases)
	s := <-done
	if rp == nil {
		return r, fmt.Errorf("idle %s: %w", b.label, err)
	}
	if err != nil {
		r.Warnings = append(r.Warnings, err.Error())
	}
	r.Established, r.Failed = rp.Connections.Established, rp.Connections.Failed
	r.Warnings = append(r.Warnings, rp.Warnings...)
	if c, ok := rp.Latency[report.LatencyConnect]; ok {
		r.ConnectP99 = c.P99
	}
	if mem := rp.Memory; mem != nil {
		r.RSSBefore, r.RSSAfterRamp, r.RSSAfterHold, r.RSSPerConn = mem.BeforeBytes, mem.AfterRampBytes, mem.AfterHoldBytes, mem.PerConnBytes
		if mem.Error != "" {
			r.Warnings = append(r.Warnings, "memory: "+mem.Error)
		}
	}
	if s.gmErr != nil {
		r.Warnings = append(r.Warnings, "go memory: "+s.gmErr.Error())
	} else if s.gm != nil && r.GoBefore != nil && r.Established > 0 {
		r.GoHold = s.gm
		r.GoPerConn = float64(s.gm.HeapInuse+s.gm.StackInuse-r.GoBefore.HeapInuse-r.GoBefore.StackInuse) / float64(r.Established)
	}
	if s.measured {
		r.CPUSeconds = s.cpu1 - s.cpu0
		r.CPUWindow = s.t1.Sub(s.t0).Seconds()
		r.CPUPercent = 100 * r.CPUSeconds / r.CPUWindow
	} else {
		r.Warnings = append(r.Warnings, "idle CPU not measured: the run never held its connections")
	}
	o.progress("idle %-10s %d conns: %s", b.name, conns, r)
	if r.Established == 0 {
		return r, errors.New("no connection was established")
	}
	return r, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
