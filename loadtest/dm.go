package loadtest

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/parleychat/parley/loadtest/mqttclient"
	"github.com/parleychat/parley/loadtest/parleyapi"
	"github.com/parleychat/parley/loadtest/report"
	"github.com/parleychat/parley/loadtest/schedule"
	"github.com/parleychat/parley/protocol"
)

// dm runs Parley direct messages: Users users, each connected once with a
// persistent session and subscribed to its inbox u/{user}, send QoS 1 DMs of
// Size bytes to random peers at Rate per second in total. With several
// brokers, user i connects to broker i mod N and a share CrossNode of its DMs
// go to users on other brokers (peerPicker).
//
// Each message is checked off three times: the recipient's copy (the main
// accounting: loss, duplicates), the sender's own copy in u/{sender}, and the
// "delivered" receipt that comes back once the recipient's client PUBACKs.
// Independently, every inbox's server seq must arrive gapless and in order.
func (r *run) dm(ctx context.Context) error {
	cfg := r.cfg
	n := cfg.Users
	r.rep.Messages = &report.Messages{QoS: 1, Size: cfg.Size, Rate: cfg.Rate}
	r.rep.Connections.Target = int64(n)
	mem := r.newMemory()
	mem.sample(ctx, memField(mem, 0), memField(mem, 3))

	r.setPhase("users")
	creds, err := r.provision(ctx, n)
	if err != nil {
		return fmt.Errorf("dm: %w", err)
	}
	users := make([]string, n)
	for i, c := range creds {
		users[i] = c.ID
	}
	perSender := int(schedule.Plan{Rate: cfg.Rate, Ramp: cfg.Ramp, Duration: cfg.Duration}.Total()/int64(n)) + 1
	l := newLedger(cfg.RunID, r.m, users, perSender, false, func(_, dest int32, fn func(int)) { fn(int(dest)) })
	l.nodes = len(cfg.Brokers)
	peers := peerPicker{users: n, nodes: len(cfg.Brokers), cross: cfg.CrossNode}

	r.setPhase("connecting")
	clients, err := r.connectUsers(ctx, creds, l, func(int) []string { return nil })
	if err != nil {
		return fmt.Errorf("dm: %w", err)
	}
	mem.sample(ctx, memField(mem, 1), memField(mem, 4))
	if mem != nil {
		mem.perConn(int64(n))
	}

	seed := uint64(runTag(cfg.RunID))
	r.send(ctx, n, func(i int) func(context.Context, schedule.Tick) {
		rng := rand.New(rand.NewPCG(seed, uint64(i))) // used by this sender's goroutine only
		return func(ctx context.Context, t schedule.Tick) {
			peer := peers.pick(rng, i)
			payload := appendParleyPayload(make([]byte, 0, cfg.Size), parleyCid(cfg.RunID, i, t.Seq), t.Due, cfg.Size)
			r.publish(ctx, clients[i], l.logs[i], t, int32(peer), protocol.UserInbox(users[peer]), 1, payload, 1, parleyReason)
		}
	})
	r.drain(func() bool {
		return r.m.inFlight() == 0 && r.m.delivered.Load() >= r.m.expected.Load() &&
			r.m.echo.Count() >= r.m.acked.Load() && r.m.receipt.Count() >= r.m.delivered.Load()
	})
	mem.sample(context.Background(), memField(mem, 2), new(int64))
	l.reconcile(r.rep)
	return nil
}

// connectUsers connects one persistent-session client per user, user i to
// broker i mod N, subscribed to the user's inbox and to extra(i), delivering
// to the ledger.
func (r *run) connectUsers(ctx context.Context, creds []parleyapi.Credential, l *ledger, extra func(i int) []string) ([]*mqttclient.Client, error) {
	return r.dialAll(ctx, len(creds), func(i int) mqttclient.ClientConfig {
		c := creds[i]
		return mqttclient.ClientConfig{
			Options: mqttclient.Options{
				Addr:     r.broker(i),
				ClientID: c.ID + "/lt", Username: c.ID, Password: c.Token,
				CleanStart: true, SessionExpiry: r.cfg.SessionExpiry,
				OnMessage: func(m mqttclient.Message) { l.receive(i, m) },
			},
			Subscribe:    append([]string{protocol.UserInbox(c.ID)}, extra(i)...),
			SubscribeQoS: 1,
		}
	})
}
