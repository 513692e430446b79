package loadtest

import (
	"context"
	"fmt"

	"github.com/parleychat/parley/loadtest/parleyapi"
	"github.com/parleychat/parley/loadtest/report"
	"github.com/parleychat/parley/loadtest/schedule"
	"github.com/parleychat/parley/protocol"
)

// group runs Parley group messages: Groups groups of Members users each (user
// i belongs to group i/Members; the group's first user creates it and owns
// it). Every user subscribes to its group's inbox g/{group} and sends into
// it, so group traffic is spread over the groups at random. Every other
// member must get each accepted message, and the sender its own copy (it is
// subscribed too); every member checks the group inbox's seq, and the
// senders check the aggregated "delivered" receipts in their own inboxes.
// With several brokers, user i connects to broker i mod N, so the members of
// a group are spread over them.
func (r *run) group(ctx context.Context) error {
	cfg := r.cfg
	g, size := cfg.Groups, cfg.Members
	n := g * size
	r.rep.Messages = &report.Messages{QoS: 1, Size: cfg.Size, Rate: cfg.Rate}
	r.rep.Connections.Target = int64(n)
	groupOf := func(i int) int { return i / size }
	groupName := func(k int) string { return fmt.Sprintf("%sg%d", cfg.UserPrefix, k) }
	mem := r.newMemory()
	mem.sample(ctx, memField(mem, 0), memField(mem, 3))

	r.setPhase("users")
	creds, err := r.provision(ctx, n)
	if err != nil {
		return fmt.Errorf("group: %w", err)
	}
	users := make([]string, n)
	for i, c := range creds {
		users[i] = c.ID
	}
	groups := make([]parleyapi.Group, g)
	for k := range groups {
		groups[k] = parleyapi.Group{Name: groupName(k), Owner: creds[k*size], Members: users[k*size+1 : (k+1)*size]}
	}
	ids, err := r.api().CreateGroups(ctx, groups)
	if err != nil {
		return fmt.Errorf("group: %w", err)
	}
	if len(ids) != g {
		return fmt.Errorf("group: asked for %d groups, got %d ids", g, len(ids))
	}
	for _, id := range ids {
		if !protocol.ValidID(id) {
			return fmt.Errorf("group: the server gave a group the id %q, not valid as a topic level", id)
		}
	}
	groupID := func(k int) string { return ids[k] }
	members := func(sender, dest int32, fn func(int)) {
		for i := int(dest) * size; i < int(dest+1)*size; i++ {
			if i != int(sender) {
				fn(i)
			}
		}
	}
	perSender := int(schedule.Plan{Rate: cfg.Rate, Ramp: cfg.Ramp, Duration: cfg.Duration}.Total()/int64(n)) + 1
	l := newLedger(cfg.RunID, r.m, users, perSender, true, members)
	l.nodes = len(cfg.Brokers)

	r.setPhase("connecting")
	clients, err := r.connectUsers(ctx, creds, l, func(i int) []string {
		return []string{protocol.GroupInbox(groupID(groupOf(i)))}
	})
	if err != nil {
		return fmt.Errorf("group: %w", err)
	}
	mem.sample(ctx, memField(mem, 1), memField(mem, 4))
	if mem != nil {
		mem.perConn(int64(n))
	}
	r.send(ctx, n, func(i int) func(context.Context, schedule.Tick) {
		k := groupOf(i)
		topic := protocol.GroupInbox(groupID(k))
		return func(ctx context.Context, t schedule.Tick) {
			payload := appendParleyPayload(make([]byte, 0, cfg.Size), parleyCid(cfg.RunID, i, t.Seq), t.Due, cfg.Size)
			r.publish(ctx, clients[i], l.logs[i], t, int32(k), topic, 1, payload, int64(size-1), parleyReason)
		}
	})
	r.drain(func() bool {
		return r.m.inFlight() == 0 && r.m.delivered.Load() >= r.m.expected.Load() &&
			r.m.echo.Count() >= r.m.acked.Load() && r.m.receipt.Count() >= r.m.acked.Load()
	})
	mem.sample(context.Background(), memField(mem, 2), new(int64))
	l.reconcile(r.rep)
	return nil
}
