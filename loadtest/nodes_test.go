package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/loadtest/account"
	"github.com/parleychat/parley/loadtest/baremochi"
	"github.com/parleychat/parley/loadtest/mqttclient"
	"github.com/parleychat/parley/loadtest/parleyapi"
	"github.com/parleychat/parley/loadtest/report"
	"github.com/parleychat/parley/protocol"
)

// TestPeersAcrossNodes checks, for every user count and broker count in a
// range, that the closed-form pickers enumerate exactly the users they stand
// for: the others on one's own broker, and the users on other brokers.
func TestPeersAcrossNodes(t *testing.T) {
	for nodes := 2; nodes <= 5; nodes++ {
		for n := 2; n <= 13; n++ {
			for i := range n {
				b := nodeOf(i, nodes)
				var wantSame, wantOther, gotSame, gotOther []int
				for u := range n {
					switch {
					case u == i:
					case nodeOf(u, nodes) == b:
						wantSame = append(wantSame, u)
					default:
						wantOther = append(wantOther, u)
					}
				}
				own := usersOn(b, n, nodes)
				for k := range own - 1 {
					gotSame = append(gotSame, sameNodePeer(k, i, nodes))
				}
				for k := range n - own {
					gotOther = append(gotOther, otherNodePeer(k, b, nodes))
				}
				if !slices.Equal(gotSame, wantSame) || !slices.Equal(gotOther, wantOther) {
					t.Fatalf("%d users on %d brokers, user %d: same node %v, want %v; other nodes %v, want %v",
						n, nodes, i, gotSame, wantSame, gotOther, wantOther)
				}
			}
		}
	}
}

func TestPeerPicker(t *testing.T) {
	tests := map[string]struct {
		users, nodes int
		cross        float64
		wantCross    float64 // share of picks on another broker
	}{
		"one broker":              {users: 10, nodes: 1, cross: 0.9, wantCross: 0},
		"three brokers":           {users: 30, nodes: 3, cross: 0.9, wantCross: 0.9},
		"two brokers, half":       {users: 7, nodes: 2, cross: 0.5, wantCross: 0.5},
		"all across":              {users: 9, nodes: 3, cross: 1, wantCross: 1},
		"alone on each broker":    {users: 3, nodes: 3, cross: 0.5, wantCross: 1},
		"more brokers than users": {users: 2, nodes: 4, cross: 0.1, wantCross: 1},
	}
	const draws = 20000
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := peerPicker{users: tc.users, nodes: tc.nodes, cross: tc.cross}
			for i := range tc.users {
				rng := rand.New(rand.NewPCG(1, uint64(i)))
				seen := make(map[int]int)
				across := 0
				for range draws {
					peer := p.pick(rng, i)
					if peer == i || peer < 0 || peer >= tc.users {
						t.Fatalf("user %d got peer %d", i, peer)
					}
					seen[peer]++
					if nodeOf(peer, tc.nodes) != nodeOf(i, tc.nodes) {
						across++
					}
				}
				if alone := usersOn(nodeOf(i, tc.nodes), tc.users, tc.nodes) == 1; !alone || tc.nodes == 1 {
					if got := float64(across) / draws; math.Abs(got-tc.wantCross) > 0.02 {
						t.Errorf("user %d: %.3f of DMs across brokers, want %.2f", i, got, tc.wantCross)
					}
				} else if across != draws {
					t.Errorf("user %d, alone on its broker: %d of %d DMs across brokers", i, across, draws)
				}
				// Every user that may be picked is, about equally within its
				// class (same broker or another).
				for u := range tc.users {
					if u == i || (tc.cross == 1 && nodeOf(u, tc.nodes) == nodeOf(i, tc.nodes)) {
						continue
					}
					if seen[u] == 0 {
						t.Errorf("user %d never sent to user %d", i, u)
					}
				}
			}
		})
	}
}

// TestPeerPickerOneBroker: with one broker the recipients are those the dm
// workload always picked, draw for draw.
func TestPeerPickerOneBroker(t *testing.T) {
	const n = 17
	p := peerPicker{users: n, nodes: 1, cross: 0.9}
	for i := range n {
		a, b := rand.New(rand.NewPCG(7, uint64(i))), rand.New(rand.NewPCG(7, uint64(i)))
		for range 1000 {
			want := a.IntN(n - 1)
			if want >= i {
				want++
			}
			if got := p.pick(b, i); got != want {
				t.Fatalf("user %d: picked %d, the old way %d", i, got, want)
			}
		}
	}
}

// fakeAPI is one node's provisioning API: it records what it was asked.
type fakeAPI struct {
	fail  error
	mu    sync.Mutex // guards the fields below
	users []string
	grps  []string
}

func (f *fakeAPI) Provision(_ context.Context, users []parleyapi.User) ([]parleyapi.Credential, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	out := make([]parleyapi.Credential, len(users))
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, u := range users {
		f.users = append(f.users, u.ID)
		out[i] = parleyapi.Credential{ID: u.ID, Token: "tok-" + u.ID}
	}
	return out, nil
}

func (f *fakeAPI) CreateGroups(_ context.Context, groups []parleyapi.Group) ([]string, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, g := range groups {
		f.grps = append(f.grps, g.Name)
		ids = append(ids, "id-"+g.Name)
	}
	return ids, nil
}

func TestAPIsSplitProvisioning(t *testing.T) {
	tests := map[string]struct {
		nodes, users int
		want         [][]int // user indexes per node
	}{
		"even":        {nodes: 2, users: 4, want: [][]int{{0, 1}, {2, 3}}},
		"uneven":      {nodes: 3, users: 7, want: [][]int{{0, 1}, {2, 3}, {4, 5, 6}}},
		"fewer users": {nodes: 3, users: 2, want: [][]int{nil, {0}, {1}}},
		"one node":    {nodes: 1, users: 3, want: [][]int{{0, 1, 2}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			fakes := make([]*fakeAPI, tc.nodes)
			a := make(apis, tc.nodes)
			for k := range a {
				fakes[k] = &fakeAPI{}
				a[k] = nodeAPI{Provisioner: fakes[k], base: fmt.Sprintf("http://node%d", k)}
			}
			users := make([]parleyapi.User, tc.users)
			groups := make([]parleyapi.Group, tc.users)
			for i := range users {
				users[i] = parleyapi.User{ID: fmt.Sprintf("u%d", i)}
				groups[i] = parleyapi.Group{Name: fmt.Sprintf("g%d", i)}
			}
			creds, err := a.Provision(context.Background(), users)
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range creds {
				if c.ID != users[i].ID || c.Token != "tok-"+users[i].ID {
					t.Errorf("credential %d = %+v", i, c)
				}
			}
			ids, err := a.CreateGroups(context.Background(), groups)
			if err != nil {
				t.Fatal(err)
			}
			for i, id := range ids {
				if id != "id-"+groups[i].Name {
					t.Errorf("group id %d = %q", i, id)
				}
			}
			for k, f := range fakes {
				var want, wantGroups []string
				for _, i := range tc.want[k] {
					want, wantGroups = append(want, users[i].ID), append(wantGroups, groups[i].Name)
				}
				if !reflect.DeepEqual(f.users, want) || !reflect.DeepEqual(f.grps, wantGroups) {
					t.Errorf("node %d provisioned %v and %v, want %v and %v", k, f.users, f.grps, want, wantGroups)
				}
			}
		})
	}

	boom := errors.New("boom")
	a := apis{{Provisioner: &fakeAPI{}, base: "http://a"}, {Provisioner: &fakeAPI{fail: boom}, base: "http://b"}}
	_, err := a.Provision(context.Background(), []parleyapi.User{{ID: "x"}, {ID: "y"}})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "http://b") {
		t.Errorf("error %v, want boom through http://b", err)
	}
}

// TestAPIFromConfig: one HTTP root gives a plain client, several give apis
// over all of them.
func TestAPIFromConfig(t *testing.T) {
	one := &run{cfg: Config{Workload: WorkloadDM, HTTP: []string{"http://a:1"}, Admin: "adm:pw"}.Defaults()}
	if c, ok := one.api().(*parleyapi.Client); !ok || c.Base != "http://a:1" || c.AdminUser != "adm" || c.AdminPassword != "pw" {
		t.Errorf("one node: %#v", one.api())
	}
	two := &run{cfg: Config{Workload: WorkloadDM, HTTP: []string{"http://a:1", "http://b:2"}}.Defaults()}
	a, ok := two.api().(apis)
	if !ok || len(a) != 2 || a[1].base != "http://b:2" || a[1].Provisioner.(*parleyapi.Client).Base != "http://b:2" {
		t.Errorf("two nodes: %#v", two.api())
	}
}

// TestLedgerSplitsByNode: with users on two brokers, each delivery counts
// once in publish → delivery and once as same-node or cross-node; sender
// copies and receipts count in neither.
func TestLedgerSplitsByNode(t *testing.T) {
	const run = "tst002"
	users := []string{"lt-a", "lt-b", "lt-c", "lt-d"} // a, c on broker 0; b, d on broker 1
	due := time.Now().Add(-time.Millisecond)
	msgs := []struct{ s, peer int }{{0, 1}, {0, 2}, {1, 3}, {3, 0}, {2, 0}}
	wantSame, wantCross := 3, 2 // 0→2, 1→3, 2→0 stay on their broker
	for _, nodes := range []int{1, 2} {
		m := newMeter()
		l := newLedger(run, m, users, 4, false, func(_, dest int32, fn func(int)) { fn(int(dest)) })
		l.nodes = nodes
		f := &fakeInboxes{seq: map[string]int64{}, out: map[int][]fakeDelivery{}}
		for seq, x := range msgs {
			l.logs[x.s].Sending(int64(seq), int32(x.peer))
			l.logs[x.s].Set(int64(seq), account.StatusAccepted)
			f.dm(users, run, x.s, x.peer, int64(seq), due)
		}
		for u, ds := range f.out {
			for _, d := range ds {
				l.receive(u, mqttclient.Message{Topic: protocol.UserInbox(users[u]), Payload: d.payload, Received: time.Now()})
			}
		}
		lat := m.latencies()
		same, cross := lat[report.LatencyDeliverySameNode].Count, lat[report.LatencyDeliveryCrossNode].Count
		if lat[report.LatencyDelivery].Count != int64(len(msgs)) {
			t.Errorf("%d brokers: %d deliveries timed, want %d", nodes, lat[report.LatencyDelivery].Count, len(msgs))
		}
		if nodes == 1 && (same != 0 || cross != 0) {
			t.Errorf("one broker: same node %d, cross node %d, want neither", same, cross)
		}
		if nodes == 2 && (same != int64(wantSame) || cross != int64(wantCross)) {
			t.Errorf("two brokers: same node %d, cross node %d, want %d and %d", same, cross, wantSame, wantCross)
		}
	}
}

// TestConnectionsSpreadOverBrokers holds connections on three bare mochi
// brokers and counts each one's clients during the hold: connection i is on
// broker i mod 3.
func TestConnectionsSpreadOverBrokers(t *testing.T) {
	bs := []*baremochi.Broker{startBroker(t), startBroker(t), startBroker(t)}
	var counts []int64
	rep, err := Run(context.Background(), Config{
		Workload: WorkloadConnections, Brokers: []string{bs[0].Addr(), bs[1].Addr(), bs[2].Addr()},
		Conns: 31, ConnRate: 1000, Hold: 50 * time.Millisecond, Settle: 50 * time.Millisecond,
		Logger: testLogger(t),
		OnPhase: func(p string) {
			if p == "holding" {
				for _, b := range bs {
					counts = append(counts, atomic.LoadInt64(&b.Server().Info.ClientsConnected))
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Connections; c.Established != 31 || c.Failed != 0 {
		t.Errorf("connections = %+v", c)
	}
	if want := []int64{11, 10, 10}; !slices.Equal(counts, want) {
		t.Errorf("clients per broker %v, want %v", counts, want)
	}
	if want := strings.Join([]string{bs[0].Addr(), bs[1].Addr(), bs[2].Addr()}, ","); rep.Broker != want || rep.Config["brokers"] != "3" {
		t.Errorf("report broker %q, config %v", rep.Broker, rep.Config)
	}
}

// TestRawSplitsSameAndCrossNode runs raw fan-out with one bare mochi broker
// listed twice, which the load tester takes for two: publisher i is on
// "broker" (i+1) mod 2, subscriber j on j mod 2, so every message reaches one
// subscriber on its publisher's broker and one on the other.
func TestRawSplitsSameAndCrossNode(t *testing.T) {
	b := startBroker(t)
	rep, err := Run(context.Background(), Config{
		Workload: WorkloadRaw, Brokers: []string{b.Addr(), b.Addr()}, QoS: 1, Publishers: 2, Subscribers: 2,
		Rate: 200, Duration: time.Second, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lost() != 0 || rep.Messages.Sent != 200 {
		t.Fatalf("messages %+v, accounting %+v", *rep.Messages, *rep.Accounting)
	}
	lat := rep.Latency
	same, cross := lat[report.LatencyDeliverySameNode].Count, lat[report.LatencyDeliveryCrossNode].Count
	if same != 200 || cross != 200 || lat[report.LatencyDelivery].Count != 400 {
		t.Errorf("deliveries: %d same node, %d cross node, %d in all; want 200, 200, 400", same, cross, lat[report.LatencyDelivery].Count)
	}
}
