package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/protocol"
)

// BenchmarkGroupFanout: one message into a group of 1,000 connected members;
// the time until the last member has it, p50 and p99 over b.N messages.
func BenchmarkGroupFanout(b *testing.B) {
	const members = 1000
	n := brokertest.Start(b, brokertest.Options{Store: benchStore()})
	tokens := make([]string, members)
	ids := make([]string, members)
	for i := range ids {
		ids[i] = fmt.Sprintf("m%04d", i)
		tokens[i] = n.User(ids[i])
	}
	g := createGroup(b, n, tokens[0], "Everyone", ids[1:]...)
	topic := "g/" + g.ID

	var mu sync.Mutex
	arrived := map[string]int{}        // message id -> members that have it
	done := map[string]chan struct{}{} // message id -> closed when all have it
	var clients []*paho.Client
	for i := range ids {
		c := n.MustV5(ids[i], tokens[i], ids[i], brokertest.V5Options{ReceiveMaximum: 64})
		c.AddOnPublishReceived(func(pr paho.PublishReceived) (bool, error) {
			h, ok := protocol.PeekHeader(pr.Packet.Payload)
			if !ok || h.Type != protocol.TypeMsg {
				return true, nil
			}
			mu.Lock()
			arrived[h.ID]++
			if arrived[h.ID] == members {
				if ch := done[cidOfEntry(pr.Packet.Payload)]; ch != nil {
					close(ch)
				}
			}
			mu.Unlock()
			return true, nil
		})
		c.Sub(b, topic, 1)
		clients = append(clients, c.Client)
	}
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cid := fmt.Sprintf("c%d", i)
		ch := make(chan struct{})
		mu.Lock()
		done[cid] = ch
		mu.Unlock()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := clients[i%members].Publish(ctx, &paho.Publish{Topic: topic, QoS: 1,
			Payload: []byte(`{"cid":"` + cid + `","body":{"text":"hello everyone, this is about a hundred bytes of chat text"}}`)})
		if err != nil {
			b.Fatal(err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			b.Fatalf("message %d did not reach every member", i)
		}
		cancel()
		lat[i] = time.Since(start)
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(b.N*members)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkGroupThroughput: 100 groups of 50 members (500 users, each in 10
// groups), one closed-loop sender per group: group messages stored and fanned
// out per second.
func BenchmarkGroupThroughput(b *testing.B) {
	const users, groups, size = 500, 100, 50
	n := brokertest.Start(b, brokertest.Options{Store: benchStore()})
	tokens := make([]string, users)
	ids := make([]string, users)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%03d", i)
		tokens[i] = n.User(ids[i])
	}
	var delivered atomic.Int64
	clients := make([]*brokertest.V5, users)
	for i := range ids {
		clients[i] = n.MustV5(ids[i], tokens[i], ids[i], brokertest.V5Options{ReceiveMaximum: 64})
		clients[i].AddOnPublishReceived(func(paho.PublishReceived) (bool, error) {
			delivered.Add(1)
			return true, nil
		})
	}
	topics := make([]string, groups)
	owners := make([]int, groups)
	for gi := 0; gi < groups; gi++ {
		// Group gi has members gi*5 .. gi*5+49 (mod users): each user is in 10 groups.
		var ms []string
		owner := (gi * 5) % users
		for k := 1; k < size; k++ {
			ms = append(ms, ids[(gi*5+k)%users])
		}
		g := createGroup(b, n, tokens[owner], fmt.Sprintf("g%d", gi), ms...)
		topics[gi], owners[gi] = "g/"+g.ID, owner
		for k := 0; k < size; k++ {
			clients[(gi*5+k)%users].Sub(b, topics[gi], 1)
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for gi := 0; gi < groups; gi++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[owners[gi]]
			for next.Add(1) <= int64(b.N) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := c.Publish(ctx, &paho.Publish{Topic: topics[gi], QoS: 1, Payload: []byte(`{"body":{"text":"hi all"}}`)})
				cancel()
				if err != nil {
					b.Errorf("publish: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "group-msgs/s")
	b.ReportMetric(float64(delivered.Load())/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(0, "ns/op")
}

func cidOfEntry(p []byte) string {
	var e struct {
		Cid string `json:"cid"`
	}
	_ = json.Unmarshal(p, &e)
	return e.Cid
}
