package loadtest

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/loadtest/latency"
	"github.com/parleychat/parley/loadtest/report"
)

// meter holds a run's live counters and latency recorders, prints the
// progress line, and keeps the per-second series for the chart.
type meter struct {
	sent       atomic.Int64 // messages written
	sendFailed atomic.Int64 // writes that failed
	acked      atomic.Int64 // PUBACKs with success
	refused    atomic.Int64 // PUBACKs with an error code
	noAck      atomic.Int64 // QoS 1 publishes that never got their PUBACK
	qos1Sent   atomic.Int64 // QoS 1 messages written: in flight = qos1Sent - acked - refused - noAck
	delivered  atomic.Int64 // first copies received
	dups       atomic.Int64 // extra copies received
	expected   atomic.Int64 // deliveries owed so far (accepted messages × their receivers)
	foreign    atomic.Int64 // messages that were not this run's
	errors     atomic.Int64 // everything counted in errs
	conns      atomic.Int64 // connections open now
	lastArrive atomic.Int64 // unix nanos of the last arrival of anything

	ack, delivery, echo, receipt, lag, connect *latency.Recorder
	// deliverySame and deliveryCross split delivery, with several brokers,
	// by whether the receiver is on the sender's broker.
	deliverySame, deliveryCross *latency.Recorder

	errMu sync.Mutex // guards errs
	errs  map[string]int64

	backlog func() int64 // messages due but not yet written, over all senders

	seriesMu sync.Mutex // guards series
	series   []report.Point
}

func newMeter() *meter {
	return &meter{
		ack: latency.New(), delivery: latency.New(), echo: latency.New(), receipt: latency.New(),
		lag: latency.New(), connect: latency.New(), deliverySame: latency.New(), deliveryCross: latency.New(),
		errs:    make(map[string]int64),
		backlog: func() int64 { return 0 },
	}
}

// fail counts an error under a reason.
func (m *meter) fail(reason string) {
	m.errors.Add(1)
	m.errMu.Lock()
	m.errs[reason]++
	m.errMu.Unlock()
}

func (m *meter) errorCounts() map[string]int64 {
	m.errMu.Lock()
	defer m.errMu.Unlock()
	if len(m.errs) == 0 {
		return nil
	}
	out := make(map[string]int64, len(m.errs))
	for k, v := range m.errs {
		out[k] = v
	}
	return out
}

func (m *meter) arrived(t time.Time) { m.lastArrive.Store(t.UnixNano()) }

// deliveryLatency records a first copy's publish → delivery latency; with
// several brokers (nodes > 1) also as same-node or cross-node, by the brokers
// of the sender and of the receiver.
func (m *meter) deliveryLatency(d time.Duration, nodes, senderNode, receiverNode int) {
	m.delivery.Record(d)
	switch {
	case nodes <= 1:
	case senderNode == receiverNode:
		m.deliverySame.Record(d)
	default:
		m.deliveryCross.Record(d)
	}
}

func (m *meter) inFlight() int64 {
	return m.qos1Sent.Load() - m.acked.Load() - m.refused.Load() - m.noAck.Load()
}

// progress prints a line and records a point every interval until ctx is
// done; then it records the last partial interval. phase names what the run
// is doing, for the line.
func (m *meter) progress(ctx context.Context, w io.Writer, interval time.Duration, start time.Time, connsOnly bool, phase func() string) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var prev report.Point
	last := start
	m.seriesMu.Lock()
	m.series = append(m.series, report.Point{Connections: m.conns.Load()}) // t = 0
	m.seriesMu.Unlock()
	tick := func(now time.Time) {
		p := report.Point{
			T:           now.Sub(start).Seconds(),
			Sent:        m.sent.Load(),
			Acked:       m.acked.Load(),
			Delivered:   m.delivered.Load(),
			Errors:      m.errors.Load(),
			Connections: m.conns.Load(),
			InFlight:    m.inFlight(),
			Ack:         m.ack.Rotate(),
			Delivery:    m.delivery.Rotate(),
			Connect:     m.connect.Rotate(),
		}
		cum := p
		prevConns := prev.Connections
		p.Sent -= prev.Sent
		p.Acked -= prev.Acked
		p.Delivered -= prev.Delivered
		p.Errors -= prev.Errors
		dt := now.Sub(last).Seconds()
		prev, last = cum, now
		m.seriesMu.Lock()
		m.series = append(m.series, p)
		m.seriesMu.Unlock()
		if w == nil {
			return
		}
		if connsOnly {
			fmt.Fprintf(w, "[%6.1fs] %-10s connections %d (%+.0f/s)  connect p99 %s  errors %d\n",
				p.T, phase(), p.Connections, float64(p.Connections-prevConns)/max(dt, 1e-9), ms(p.Connect), cum.Errors)
			return
		}
		fmt.Fprintf(w, "[%6.1fs] %-9s sent %d (%.0f/s)  acked %d  delivered %d (%.0f/s)  in flight %d  backlog %d  p99 ack %s delivery %s  errors %d\n",
			p.T, phase(), cum.Sent, float64(p.Sent)/max(dt, 1e-9), cum.Acked, cum.Delivered, float64(p.Delivered)/max(dt, 1e-9),
			p.InFlight, m.backlog(), ms(p.Ack), ms(p.Delivery), cum.Errors)
	}
	for {
		select {
		case now := <-ticker.C:
			tick(now)
		case <-ctx.Done():
			if now := time.Now(); now.Sub(last) > interval/10 {
				tick(now)
			}
			return
		}
	}
}

func ms(s latency.Summary) string {
	if s.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fms", s.P99)
}

func (m *meter) points() []report.Point {
	m.seriesMu.Lock()
	defer m.seriesMu.Unlock()
	return append([]report.Point(nil), m.series...)
}

// latencies returns the summaries of the recorders that have samples.
func (m *meter) latencies() map[string]latency.Summary {
	out := make(map[string]latency.Summary)
	for name, r := range map[string]*latency.Recorder{
		report.LatencyAck: m.ack, report.LatencyDelivery: m.delivery, report.LatencyEcho: m.echo,
		report.LatencyReceipt: m.receipt, report.LatencySendLag: m.lag, report.LatencyConnect: m.connect,
		report.LatencyDeliverySameNode: m.deliverySame, report.LatencyDeliveryCrossNode: m.deliveryCross,
	} {
		if s := r.Summary(); s.Count > 0 {
			out[name] = s
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
