package loadtest

import (
	"context"
	"fmt"

	"github.com/parleychat/parley/loadtest/account"
	"github.com/parleychat/parley/loadtest/mqttclient"
	"github.com/parleychat/parley/loadtest/report"
	"github.com/parleychat/parley/loadtest/schedule"
)

// raw runs plain MQTT: Publishers publishers send to Topics topics, and each of
// the Subscribers subscribers listens to one topic. Publisher i publishes to
// topic i%Topics and subscriber j subscribes to topic j%Topics, so one topic
// gives full fan-out (every subscriber gets every message), one subscriber
// gives fan-in, and Topics = Publishers = Subscribers gives pairs. With
// several brokers, subscriber j connects to broker j mod N and publisher i to
// broker (i+1) mod N, so that a pair spans two brokers.
//
// Every payload carries the run, the publisher, its sequence number and the
// scheduled send time; subscribers check each (subscriber, publisher) stream
// for loss, duplicates and order.
func (r *run) raw(ctx context.Context) error {
	cfg := r.cfg
	P, S, T := cfg.Publishers, cfg.Subscribers, cfg.Topics
	topic := func(k int) string { return fmt.Sprintf("%s/%s/t%d", cfg.TopicPrefix, cfg.RunID, k) }
	subsOf := make([][]int, T)
	for j := range S {
		subsOf[j%T] = append(subsOf[j%T], j)
	}
	if S > 0 && T > S {
		r.warn(fmt.Sprintf("%d topics but %d subscribers: messages on %d topics reach nobody", T, S, T-S))
	}
	logs := make([]*account.SendLog, P)
	perPub := int(schedule.Plan{Rate: cfg.Rate, Ramp: cfg.Ramp, Duration: cfg.Duration}.Total()/int64(P)) + 1
	for i := range logs {
		logs[i] = account.NewSendLog(perPub)
	}
	checklist := account.NewChecklist(S)
	tag := runTag(cfg.RunID)
	r.rep.Messages = &report.Messages{QoS: int(cfg.QoS), Size: cfg.Size, Rate: cfg.Rate}
	mem := r.newMemory()
	if mem != nil {
		mem.sample(ctx, &mem.rep.BeforeBytes, &mem.rep.SelfBeforeBytes)
	}

	r.setPhase("connecting")
	r.rep.Connections.Target = int64(P + S)
	_, err := r.dialAll(ctx, S, func(j int) mqttclient.ClientConfig {
		return mqttclient.ClientConfig{
			Options: mqttclient.Options{
				Addr:     r.broker(j),
				ClientID: fmt.Sprintf("lt-%s-s%d", cfg.RunID, j), CleanStart: true,
				Username: cfg.Username, Password: cfg.Password,
				OnMessage: func(m mqttclient.Message) { r.rawArrival(j, m, tag, P, checklist) },
			},
			Subscribe:    []string{topic(j % T)},
			SubscribeQoS: cfg.QoS,
		}
	})
	if err != nil {
		return fmt.Errorf("raw: subscribers: %w", err)
	}
	pubs, err := r.dialAll(ctx, P, func(i int) mqttclient.ClientConfig {
		return mqttclient.ClientConfig{Options: mqttclient.Options{
			Addr:     cfg.Brokers[rawPublisherNode(i, len(cfg.Brokers))],
			ClientID: fmt.Sprintf("lt-%s-p%d", cfg.RunID, i), CleanStart: true,
			Username: cfg.Username, Password: cfg.Password,
		}}
	})
	if err != nil {
		return fmt.Errorf("raw: publishers: %w", err)
	}
	if mem != nil {
		mem.sample(ctx, &mem.rep.AfterRampBytes, &mem.rep.SelfAfterBytes)
		mem.perConn(int64(P + S))
	}

	r.send(ctx, P, func(i int) func(context.Context, schedule.Tick) {
		k := i % T
		t, fanout := topic(k), int64(len(subsOf[k]))
		return func(ctx context.Context, tick schedule.Tick) {
			payload := appendRaw(make([]byte, 0, cfg.Size), rawHeader{run: tag, publisher: uint32(i), seq: tick.Seq, due: tick.Due}, cfg.Size)
			r.publish(ctx, pubs[i], logs[i], tick, int32(k), t, cfg.QoS, payload, fanout, mqttReason)
		}
	})
	r.drain(func() bool {
		return r.m.inFlight() == 0 && r.m.delivered.Load() >= r.m.expected.Load()
	})
	if mem != nil {
		mem.sample(context.Background(), &mem.rep.AfterHoldBytes, new(int64))
	}
	res := account.Reconcile(logs, checklist, func(_, dest int32, fn func(int)) {
		for _, j := range subsOf[dest] {
			fn(j)
		}
	})
	r.rep.Accounting = &res
	if res.Lost > 0 {
		r.log.Error("MESSAGE LOSS", "lost", res.Lost, "expected", res.Expected)
	}
	return nil
}

// rawArrival checks off one message at subscriber j.
func (r *run) rawArrival(j int, m mqttclient.Message, tag uint32, publishers int, checklist *account.Checklist) {
	r.m.arrived(m.Received)
	h, ok := parseRaw(m.Payload)
	if !ok || h.run != tag || int(h.publisher) >= publishers {
		r.m.foreign.Add(1)
		return
	}
	if checklist.Mark(j, int32(h.publisher), h.seq) == account.ArrivalDuplicate {
		r.m.dups.Add(1)
		return
	}
	nodes := len(r.cfg.Brokers)
	r.m.deliveryLatency(m.Received.Sub(h.due), nodes, rawPublisherNode(int(h.publisher), nodes), nodeOf(j, nodes))
	r.m.delivered.Add(1)
}

// mqttReason names a PUBACK reason code.
func mqttReason(code byte) string { return mqttclient.ReasonName(code, false) }
