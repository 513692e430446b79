package broker_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/parleychat/parley/broker/brokertest"
)

// BenchmarkPublishDM measures DMs per second through a real node (mochi
// broker, hooks, Postgres) and the publish→PUBACK latency a sender sees, with
// 1, 100 and 1,000 concurrent senders, each publishing its next message when
// the previous one is acknowledged, on the embedded store and on Postgres in
// the same run. Every recipient is subscribed, so the figures include live
// delivery of both copies and the delivered receipts.
func BenchmarkPublishDM(b *testing.B) {
	for _, store := range brokertest.Stores {
		for _, senders := range []int{1, 100, 1000} {
			b.Run(fmt.Sprintf("store=%s/senders=%d", store, senders), func(b *testing.B) {
				benchPublishDM(b, brokertest.Options{Store: store}, senders)
			})
		}
	}
}

func benchPublishDM(b *testing.B, o brokertest.Options, senders int) {
	{
		{
			n := brokertest.Start(b, o)
			users := senders
			if users < 2 {
				users = 2
			}
			clients := make([]*brokertest.V5, users)
			for i := range clients {
				id := fmt.Sprintf("u%d", i)
				clients[i] = n.MustV5(id, n.User(id), id, brokertest.V5Options{ReceiveMaximum: 64})
				clients[i].Sub(b, "u/"+id, 1)
			}
			payload := []byte(`{"body":{"text":"a hundred bytes of chat message text, more or less, which is what people send"}}`)
			var next atomic.Int64
			lat := make([]time.Duration, b.N)
			b.ResetTimer()
			var wg sync.WaitGroup
			for s := 0; s < senders; s++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := clients[s]
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						to := fmt.Sprintf("u/u%d", (s+1+int(i)%(users-1))%users)
						start := time.Now()
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						pr, err := c.Publish(ctx, &paho.Publish{Topic: to, QoS: 1, Payload: payload})
						cancel()
						if err != nil || pr.ReasonCode != 0 {
							b.Errorf("publish: %v", err)
							return
						}
						lat[i] = time.Since(start)
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		}
	}
}
