// Package loadtest is Parley's load tester: it opens many MQTT connections,
// sends messages on an open-loop schedule, checks every message off at every
// receiver that should get it, and reports latency, throughput, errors and
// loss. Its workloads:
//
//   - raw: plain MQTT on generic topics, so the same load runs against any
//     broker (Parley, bare mochi, Mosquitto);
//   - connections: a ramp of idle connections held open, with the broker's
//     memory per connection;
//   - dm: Parley users sending direct messages to each other;
//   - group: Parley group messages (waits for Parley's group API).
//
// Run takes a Config and returns a report.Report; cmd/parley-loadtest wires
// flags, signals and output files to it.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/parleychat/parley/loadtest/account"
	"github.com/parleychat/parley/loadtest/mqttclient"
	"github.com/parleychat/parley/loadtest/report"
	"github.com/parleychat/parley/loadtest/rss"
	"github.com/parleychat/parley/loadtest/schedule"
)

// run is the state of one Run.
type run struct {
	cfg    Config
	log    *slog.Logger
	m      *meter
	dialer *mqttclient.Dialer
	rep    *report.Report
	began  time.Time

	phase       atomic.Pointer[string]
	drivers     atomic.Pointer[[]*schedule.Driver]
	interrupted atomic.Bool

	established, failed, drops, reconnects atomic.Int64
	firstConn, lastConn                    atomic.Int64 // unix nanos: first connect attempt, last CONNACK

	mu       sync.Mutex // guards the fields below
	clients  []*mqttclient.Client
	warnings []string
	warned   map[string]bool
	sched    schedule.Stats
	window   time.Duration
	sendFrom time.Time // when the send window began
}

// Run runs one load test. Cancelling ctx stops it early: sending stops, the
// run drains for at most cfg.Drain, and the report covers what ran (with
// Interrupted set). The report is nil only when the run could not start; it
// may come with an error that ended the run partway.
func Run(ctx context.Context, cfg Config) (*report.Report, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &run{
		cfg: cfg,
		log: cfg.Logger.With("component", "loadtest", "workload", cfg.Workload, "run_id", cfg.RunID),
		m:   newMeter(),
		dialer: &mqttclient.Dialer{
			Sources: cfg.Sources,
			Limiter: rate.NewLimiter(rate.Limit(cfg.ConnRate), max(1, int(cfg.ConnRate/10))),
			Timeout: cfg.ConnectTimeout,
		},
		warned: make(map[string]bool),
	}
	r.setPhase("starting")
	r.m.backlog = r.backlog
	r.began = time.Now()
	r.rep = &report.Report{
		Tool: "parley-loadtest", Workload: cfg.Workload, Broker: strings.Join(cfg.Brokers, ","), Protocol: cfg.Protocol,
		Started: r.began.UTC().Round(0), Config: cfg.describe(),
	}

	progCtx, stopProgress := context.WithCancel(context.Background())
	var progWG sync.WaitGroup
	progWG.Add(1)
	go func() {
		defer progWG.Done()
		r.m.progress(progCtx, cfg.Progress, cfg.ProgressInterval, r.began, cfg.Workload == WorkloadConnections,
			func() string { return *r.phase.Load() })
	}()

	var err error
	switch cfg.Workload {
	case WorkloadRaw:
		err = r.raw(ctx)
	case WorkloadConnections:
		err = r.connections(ctx)
	case WorkloadDM:
		err = r.dm(ctx)
	case WorkloadGroup:
		err = r.group(ctx)
	}
	if ctx.Err() != nil {
		r.interrupted.Store(true)
	}
	r.setPhase("closing")
	r.closeAll()
	stopProgress()
	progWG.Wait()
	r.finish()
	if err != nil && r.established.Load() == 0 && r.m.sent.Load() == 0 {
		return nil, err // nothing ran: nothing to report
	}
	return r.rep, err
}

func (r *run) setPhase(p string) {
	r.phase.Store(&p)
	if r.cfg.OnPhase != nil {
		r.cfg.OnPhase(p)
	}
}

func (r *run) backlog() int64 {
	ds := r.drivers.Load()
	if ds == nil {
		return 0
	}
	var n int64
	for _, d := range *ds {
		n += d.Backlog()
	}
	return n
}

// warn records a warning for the report, once per text.
func (r *run) warn(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.warned[msg] {
		return
	}
	r.warned[msg] = true
	r.warnings = append(r.warnings, msg)
	r.log.Warn(msg)
}

// finish fills in the report parts every workload shares.
func (r *run) finish() {
	rep := r.rep
	rep.Elapsed = time.Since(r.began).Seconds()
	rep.Interrupted = r.interrupted.Load()
	rep.Latency = r.m.latencies()
	rep.Errors = r.m.errorCounts()
	rep.Series = r.m.points()
	rep.Connections.Established = r.established.Load()
	rep.Connections.Failed = r.failed.Load()
	rep.Connections.Drops = r.drops.Load()
	rep.Connections.Reconnects = r.reconnects.Load()
	if f, l := r.firstConn.Load(), r.lastConn.Load(); f > 0 && l > f {
		rep.Connections.RampSeconds = time.Duration(l - f).Seconds()
	}
	r.mu.Lock()
	rep.SendWindow = r.window.Seconds()
	if rep.Messages != nil {
		m := rep.Messages
		m.Scheduled, m.Shed, m.Unsent = r.sched.Scheduled, r.sched.Shed, r.sched.Unsent
		m.Sent, m.SendFailed = r.m.sent.Load(), r.m.sendFailed.Load()
		m.Acked, m.Refused, m.NoAck = r.m.acked.Load(), r.m.refused.Load(), r.m.noAck.Load()
		m.Delivered, m.Duplicates = r.m.delivered.Load(), r.m.dups.Load()
		if w := r.window.Seconds(); w > 0 {
			m.SendRate = float64(m.Sent) / w
			m.DeliveryRate = float64(m.Delivered) / w
		}
		_, realClock := r.cfg.Clock.(schedule.RealClock) // arrivals are stamped by the real clock
		if last := r.m.lastArrive.Load(); realClock && m.Delivered > 0 && !r.sendFrom.IsZero() && last > r.sendFrom.UnixNano() {
			m.Throughput = float64(m.Delivered) / time.Duration(last-r.sendFrom.UnixNano()).Seconds()
		}
		if m.Shed > 0 {
			r.warnings = append(r.warnings, fmt.Sprintf(
				"%d messages were shed: the load tester could not write them as fast as scheduled "+
					"(raise -max-backlog, add connections, or lower -rate); they are not counted as sent", m.Shed))
		}
		if m.Unsent > 0 {
			r.warnings = append(r.warnings, fmt.Sprintf("%d due messages were still waiting to be written when sending stopped", m.Unsent))
		}
		if inflight := r.m.inFlight(); inflight > 0 {
			r.warnings = append(r.warnings, fmt.Sprintf("%d QoS 1 messages still had no PUBACK at the end of the drain", inflight))
		}
	}
	if n := r.m.foreign.Load(); n > 0 {
		r.warnings = append(r.warnings, fmt.Sprintf("%d received messages were not this run's (other traffic on the topics?)", n))
	}
	rep.Warnings = append(rep.Warnings, r.warnings...)
	r.mu.Unlock()
}

// clientConfig completes a client's configuration, whose Addr the workload
// chose among the brokers, with the run's connection settings and hooks.
func (r *run) clientConfig(cc mqttclient.ClientConfig) mqttclient.ClientConfig {
	o := &cc.Options
	o.Protocol = r.cfg.Protocol
	o.KeepAlive = r.cfg.KeepAlive
	o.ReceiveMaximum = r.cfg.ReceiveMaximum
	o.MaxInflight = r.cfg.MaxInflight
	o.ConnectTimeout = r.cfg.ConnectTimeout
	o.Dialer = r.dialer
	cc.Reconnect = r.cfg.Reconnect
	cc.MinBackoff, cc.MaxBackoff = r.cfg.ReconnectMin, r.cfg.ReconnectMax
	cc.OnDrop = func(err error) {
		r.drops.Add(1)
		r.m.conns.Add(-1)
		r.m.fail("connection lost: " + errReason(err))
	}
	cc.OnReconnect = func(err error) {
		r.reconnects.Add(1)
		if err != nil {
			r.m.fail("reconnect: " + errReason(err))
			return
		}
		r.m.conns.Add(1)
	}
	return cc
}

// dial connects one client and keeps it for closing at the end.
func (r *run) dial(ctx context.Context, cc mqttclient.ClientConfig) (*mqttclient.Client, error) {
	r.firstConn.CompareAndSwap(0, time.Now().UnixNano())
	c, err := mqttclient.Dial(ctx, r.clientConfig(cc))
	if err != nil && ctx.Err() != nil {
		return nil, err // the run stopped: not the broker's failure
	}
	if err != nil {
		r.failed.Add(1)
		r.m.fail("connect: " + errReason(err))
		if advice := mqttclient.Advice(err); advice != "" {
			r.warn(advice)
		}
		return nil, err
	}
	r.lastConn.Store(time.Now().UnixNano())
	r.established.Add(1)
	r.m.conns.Add(1)
	r.mu.Lock()
	r.clients = append(r.clients, c)
	r.mu.Unlock()
	return c, nil
}

// dialAll connects n clients, several at a time within the connection rate
// limit. Every one must connect: the first failure stops the rest and is
// returned.
func (r *run) dialAll(ctx context.Context, n int, mk func(i int) mqttclient.ClientConfig) ([]*mqttclient.Client, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := make([]*mqttclient.Client, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, 64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := r.dial(ctx, mk(i))
				if err != nil {
					cancel(err)
					continue
				}
				out[i] = c
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("connect %d clients: %w", n, err)
	}
	return out, nil
}

// closeAll disconnects every client, several at a time.
func (r *run) closeAll() {
	r.mu.Lock()
	clients := r.clients
	r.clients = nil
	r.mu.Unlock()
	next := make(chan *mqttclient.Client)
	var wg sync.WaitGroup
	for range min(len(clients), 64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				if err := c.Close(); err != nil {
					r.log.Debug("close client", "error", err)
				}
			}
		}()
	}
	for _, c := range clients {
		next <- c
	}
	close(next)
	wg.Wait()
	r.m.conns.Store(0)
}

// send runs one schedule.Driver per stream over the send window and returns
// when every stream is done or ctx is cancelled. Writing may run late by at
// most Drain: a connection stalled longer than that would otherwise keep the
// run going for as long as its backlog takes to time out message by message.
// What is still waiting then counts as unsent.
func (r *run) send(ctx context.Context, streams int, sender func(i int) func(context.Context, schedule.Tick)) {
	r.setPhase("sending")
	plan := schedule.Plan{Rate: r.cfg.Rate, Ramp: r.cfg.Ramp, Duration: r.cfg.Duration}
	start := r.cfg.Clock.Now()
	ctx, cancel := context.WithDeadline(ctx, start.Add(r.cfg.Duration+r.cfg.Drain))
	defer cancel()
	drivers := make([]*schedule.Driver, streams)
	for i := range drivers {
		drivers[i] = &schedule.Driver{
			Clock: r.cfg.Clock, Plan: plan, Start: start, Stream: i, Streams: streams,
			MaxBacklog: r.cfg.MaxBacklog, Send: sender(i),
		}
	}
	r.drivers.Store(&drivers)
	var wg sync.WaitGroup
	stats := make([]schedule.Stats, streams)
	for i, d := range drivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats[i] = d.Run(ctx)
		}()
	}
	wg.Wait()
	var total schedule.Stats
	for _, s := range stats {
		total.Scheduled += s.Scheduled
		total.Sent += s.Sent
		total.Shed += s.Shed
		total.Unsent += s.Unsent
	}
	r.mu.Lock()
	r.sched = total
	r.sendFrom = start
	r.window = r.cfg.Clock.Now().Sub(start)
	r.mu.Unlock()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && total.Unsent > 0 {
		r.warn(fmt.Sprintf("sending stopped %v after the end of the schedule with %d messages not yet written: "+
			"the broker or the connections stalled (in flight %d)", r.cfg.Drain, total.Unsent, r.m.inFlight()))
	}
}

// drain waits until done reports true, for at most cfg.Drain.
func (r *run) drain(done func() bool) {
	r.setPhase("draining")
	deadline := time.Now().Add(r.cfg.Drain)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !done() && time.Now().Before(deadline) {
		<-t.C
	}
}

// ackFunc returns the PUBACK callback of one QoS 1 message: it records the
// message's fate in its sender's log and owes fanout deliveries when it was
// accepted.
func (r *run) ackFunc(log *account.SendLog, seq int64, due time.Time, fanout int64, name func(byte) string) mqttclient.AckFunc {
	return func(code byte, err error) {
		switch {
		case err != nil:
			log.Set(seq, account.StatusFailed)
			r.m.noAck.Add(1)
			r.m.fail("no PUBACK: " + errReason(err))
		case code >= 0x80:
			log.Set(seq, account.StatusRefused)
			r.m.refused.Add(1)
			r.m.fail(fmt.Sprintf("PUBACK refused: %s (0x%02x)", name(code), code))
		default:
			log.Set(seq, account.StatusAccepted)
			r.m.ack.Record(time.Since(due))
			r.m.expected.Add(fanout)
			r.m.acked.Add(1)
		}
	}
}

// publish writes one message for a sender and books it. fanout is the number
// of deliveries an accepted message owes.
func (r *run) publish(ctx context.Context, c *mqttclient.Client, log *account.SendLog, t schedule.Tick, dest int32,
	topic string, qos byte, payload []byte, fanout int64, name func(byte) string) {
	log.Sending(t.Seq, dest)
	r.m.lag.Record(time.Since(t.Due))
	var onAck mqttclient.AckFunc
	if qos > 0 {
		r.m.qos1Sent.Add(1)
		onAck = r.ackFunc(log, t.Seq, t.Due, fanout, name)
	}
	if err := c.Publish(ctx, topic, qos, payload, onAck); err != nil {
		if qos > 0 {
			r.m.qos1Sent.Add(-1)
		}
		log.Set(t.Seq, account.StatusFailed)
		r.m.sendFailed.Add(1)
		r.m.fail("publish: " + errReason(err))
		return
	}
	r.m.sent.Add(1)
	if qos == 0 {
		log.Set(t.Seq, account.StatusAccepted)
		r.m.expected.Add(fanout)
	}
}

// memory samples the broker's resident memory, if the run was told where.
type memory struct {
	sampler rss.Sampler
	rep     *report.Memory
}

func (r *run) newMemory() *memory {
	var s rss.Sampler
	switch {
	case r.cfg.PID != 0:
		s = rss.Proc{PID: r.cfg.PID}
	case r.cfg.MetricsURL != "":
		s = rss.Metrics{URL: r.cfg.MetricsURL}
	default:
		return nil
	}
	r.rep.Memory = &report.Memory{Source: s.String()}
	return &memory{sampler: s, rep: r.rep.Memory}
}

// sample reads the broker's and the load tester's memory into the fields
// broker and self point to.
func (mem *memory) sample(ctx context.Context, broker, self *int64) {
	if mem == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := mem.sampler.RSS(ctx)
	if err != nil {
		if mem.rep.Error == "" {
			mem.rep.Error = err.Error()
		}
	} else {
		*broker = v
	}
	if v, err := rss.Self().RSS(ctx); err == nil {
		*self = v
	}
}

// perConn works out bytes per connection from two samples.
func (mem *memory) perConn(conns int64) {
	if mem == nil || conns <= 0 {
		return
	}
	m := mem.rep
	if m.BeforeBytes > 0 && m.AfterRampBytes > 0 {
		m.PerConnBytes = float64(m.AfterRampBytes-m.BeforeBytes) / float64(conns)
	}
	if m.SelfBeforeBytes > 0 && m.SelfAfterBytes > 0 {
		m.SelfPerConnBytes = float64(m.SelfAfterBytes-m.SelfBeforeBytes) / float64(conns)
	}
}

// errReason condenses an error into a stable reason for counting: no ids,
// addresses or numbers that differ from one occurrence to the next.
func errReason(err error) string {
	var ce *mqttclient.ConnackError
	var re *mqttclient.ResourceError
	switch {
	case err == nil:
		return "unknown"
	case errors.As(err, &ce):
		return fmt.Sprintf("refused: %s (0x%02x)", mqttclient.ReasonName(ce.Code, true), ce.Code)
	case errors.As(err, &re):
		if errors.Is(err, errEMFILE) {
			return "too many open files"
		}
		return "out of local addresses or ports"
	case errors.Is(err, mqttclient.ErrConnectionLost):
		return "connection lost"
	case errors.Is(err, mqttclient.ErrNotConnected):
		return "not connected"
	case errors.Is(err, mqttclient.ErrClosed):
		return "client closed"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "stopped"
	case errors.Is(err, errRefused):
		return "connection refused"
	}
	s := err.Error()
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
}
