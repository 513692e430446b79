package postgres_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
)

// BenchmarkAppendDM measures stored DMs per second (each DM is two entries,
// the recipient's and the sender's copy, with an idempotency key) with 1,
// 100 and 1,000 concurrent senders, each waiting for its commit like a
// publishing client waiting for its PUBACK.
func BenchmarkAppendDM(b *testing.B) {
	for _, senders := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			st, err := postgres.Open(context.Background(), postgres.Config{URL: pgtest.NewDatabase(b), Writers: benchWriters()}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			const users = 2000
			for i := 0; i < users; i++ {
				if err := st.CreateUser(context.Background(), storage.User{ID: fmt.Sprintf("u%d", i), Name: "x", PasswordHash: "x"}); err != nil {
					b.Fatal(err)
				}
			}
			body := []byte(`{"text":"` + string(make([]byte, 0)) + `a hundred bytes of chat message text, more or less, which is what people send"}`)
			var next atomic.Int64
			lat := make([]time.Duration, b.N)
			b.ResetTimer()
			var wg sync.WaitGroup
			for s := 0; s < senders; s++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					from := fmt.Sprintf("u%d", s%users)
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						to := fmt.Sprintf("u%d", (int(i)*7919+s)%users)
						m := storage.Message{ID: uuid.NewString(), From: from, To: to, TS: time.Now().UnixMilli(),
							Type: protocol.TypeMsg, Cid: fmt.Sprintf("c%d", i), Data: body,
							Inboxes: []string{protocol.UserInbox(to), protocol.UserInbox(from)}}
						if to == from {
							m.Inboxes = m.Inboxes[:1]
						}
						start := time.Now()
						if _, _, err := st.Append(context.Background(), m); err != nil {
							b.Error(err)
							return
						}
						lat[i] = time.Since(start)
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
}

func reportLatency(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// benchWriters lets a benchmark run compare writer counts:
// PARLEY_BENCH_WRITERS=2 go test -bench AppendDM.
func benchWriters() int {
	n, _ := strconv.Atoi(os.Getenv("PARLEY_BENCH_WRITERS"))
	return n
}
