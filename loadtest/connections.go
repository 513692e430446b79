package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/loadtest/mqttclient"
	"github.com/parleychat/parley/loadtest/schedule"
	"github.com/parleychat/parley/protocol"
)

// connections opens Conns idle connections on an open-loop schedule of
// ConnRate per second, holds them for Hold and samples the broker's memory
// before the ramp, after it (once Settle has passed) and at the end of the
// hold. Connection i goes to broker i mod N. Connect latency counts from
// each connection's scheduled time. When Admin is set the connections log in
// as freshly provisioned Parley users.
func (r *run) connections(ctx context.Context) error {
	cfg := r.cfg
	r.rep.Connections.Target = int64(cfg.Conns)
	mem := r.newMemory()

	ident := func(i int) (clientID, user, pass, topic string) {
		return fmt.Sprintf("lt-%s-c%d", cfg.RunID, i), cfg.Username, cfg.Password,
			fmt.Sprintf("%s/%s/c%d", cfg.TopicPrefix, cfg.RunID, i)
	}
	if cfg.Admin != "" {
		r.setPhase("users")
		creds, err := r.provision(ctx, cfg.Conns)
		if err != nil {
			return fmt.Errorf("connections: %w", err)
		}
		ident = func(i int) (string, string, string, string) {
			c := creds[i]
			return c.ID + "/lt", c.ID, c.Token, protocol.UserInbox(c.ID)
		}
	}
	mem.sample(ctx, memField(mem, 0), memField(mem, 3))

	r.setPhase("ramping")
	rampCtx, stopRamp := context.WithCancel(ctx)
	defer stopRamp()
	var (
		wg         sync.WaitGroup
		resourceKO atomic.Bool
	)
	sem := make(chan struct{}, 1024) // connection attempts in progress
	d := &schedule.Driver{
		Clock: cfg.Clock, Plan: schedule.Plan{Rate: cfg.ConnRate, Count: int64(cfg.Conns)}, Start: cfg.Clock.Now(),
		MaxBacklog: cfg.Conns,
		Send: func(ctx context.Context, t schedule.Tick) {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				id, user, pass, topic := ident(int(t.Seq))
				cc := mqttclient.ClientConfig{Options: mqttclient.Options{
					Addr: r.broker(int(t.Seq)), ClientID: id, Username: user, Password: pass, CleanStart: true,
				}}
				if cfg.Subscribe {
					cc.Subscribe, cc.SubscribeQoS = []string{topic}, 1
				}
				_, err := r.dial(ctx, cc)
				if err == nil {
					r.m.connect.Record(time.Since(t.Due))
					return
				}
				var re *mqttclient.ResourceError
				if errors.As(err, &re) && resourceKO.CompareAndSwap(false, true) {
					r.log.Error("stopping the ramp: out of a local resource", "error", err)
					stopRamp() // every further attempt would fail the same way
				}
			}()
		},
	}
	r.drivers.Store(&[]*schedule.Driver{d})
	st := d.Run(rampCtx)
	wg.Wait()
	if resourceKO.Load() {
		r.warn(fmt.Sprintf("the ramp stopped after %d of %d connections: a local resource ran out (see above)",
			r.established.Load(), cfg.Conns))
	}
	if missing := int64(cfg.Conns) - st.Sent; missing > 0 && ctx.Err() == nil && !resourceKO.Load() {
		r.warn(fmt.Sprintf("%d connections were never attempted", missing))
	}

	if ctx.Err() == nil {
		r.setPhase("settling")
		sleepCtx(ctx, cfg.Settle)
	}
	mem.sample(context.Background(), memField(mem, 1), memField(mem, 4))
	if mem != nil {
		mem.rep.SampledAfterRampS = cfg.Settle.Seconds()
		mem.perConn(r.established.Load())
	}
	if ctx.Err() == nil {
		r.setPhase("holding")
		sleepCtx(ctx, cfg.Hold)
	}
	mem.sample(context.Background(), memField(mem, 2), new(int64))
	return nil
}

// memField points at one of the memory report's fields, or at a scratch
// variable when memory is not sampled: 0 before, 1 after ramp, 2 after hold,
// 3 self before, 4 self after.
func memField(mem *memory, i int) *int64 {
	if mem == nil {
		return new(int64)
	}
	m := mem.rep
	return []*int64{&m.BeforeBytes, &m.AfterRampBytes, &m.AfterHoldBytes, &m.SelfBeforeBytes, &m.SelfAfterBytes}[i]
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
