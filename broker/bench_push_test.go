package broker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/push/pushtest"
	"github.com/parleychat/parley/storage"
)

// BenchmarkPublishDMPush is BenchmarkPublishDM with push configured: every
// message also queues a push job in its transaction, and the dispatcher
// claims and deletes the jobs (the recipients are online, so nothing is
// sent). Compare its msgs/s and p50/p99 with BenchmarkPublishDM's to see
// what the push path adds to publish→PUBACK.
//
// dispatch=idle keeps the dispatcher off the queue (a grace of an hour), so
// that only the job's insert in the message's transaction is measured.
func BenchmarkPublishDMPush(b *testing.B) {
	for _, store := range brokertest.Stores {
		for _, senders := range []int{1, 100} {
			for _, dispatch := range []string{"live", "idle"} {
				b.Run(fmt.Sprintf("store=%s/senders=%d/dispatch=%s", store, senders, dispatch), func(b *testing.B) {
					apnsSrv, fcmSrv := pushtest.NewAPNsServer(b), pushtest.NewFCMServer(b)
					o := brokertest.Options{Store: store, Push: newRouter(b, apnsSrv, fcmSrv)}
					o.Config.Push = push.ServiceConfig{Grace: 200 * time.Millisecond}
					if dispatch == "idle" {
						o.Config.Push.Grace = time.Hour
					}
					benchPublishDM(b, o, senders)
				})
			}
		}
	}
}

// BenchmarkPushDispatch measures notifications per second from the queue to
// a fake APNs on loopback: b.N messages to offline users, each with one
// token, in up to 2,500 conversations. The timer covers starting the node
// that sends (and its first connection to the fake), claiming, resolving,
// building, sending and deleting; not storing.
func BenchmarkPushDispatch(b *testing.B) {
	for _, store := range brokertest.Stores {
		b.Run("store="+store, func(b *testing.B) {
			apnsSrv, fcmSrv := pushtest.NewAPNsServer(b), pushtest.NewFCMServer(b)
			apnsSrv.SetRecording(false)
			// A long grace keeps the dispatcher off the jobs while they are
			// stored; the second node, with a short one, sends them.
			o := brokertest.Options{Store: store, Push: newRouter(b, apnsSrv, fcmSrv)}
			o.Config.Push = push.ServiceConfig{Grace: time.Hour}
			n := brokertest.Start(b, o)
			const senders, recipients = 50, 50
			for i := range recipients {
				id := fmt.Sprintf("r%d", i)
				tok := n.User(id)
				if code := n.HTTPDo("POST", "/v1/devices", tok, map[string]string{"platform": "apns",
					"token": fmt.Sprintf("%064x", i+1), "environment": "production"}, nil); code != 200 {
					b.Fatalf("register: %d", code)
				}
			}
			ctx := brokertest.Ctx(b, 10*time.Minute)
			for i := range senders {
				n.User(fmt.Sprintf("s%d", i))
			}
			// Store the messages straight through the store, spread over
			// senders × recipients conversations: past 2,500 messages some
			// coalesce, so the figure counts notifications.
			convs := map[[2]string]bool{}
			for i := range b.N {
				from, to := fmt.Sprintf("s%d", i%senders), fmt.Sprintf("r%d", (i/senders)%recipients)
				convs[[2]string{from, to}] = true
				m := storageDM(from, to, fmt.Sprintf("message %d", i))
				if _, _, err := n.Store.Append(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
			n.Stop()
			b.ResetTimer()
			o.DBURL = n.DBURL
			o.Config.Push = push.ServiceConfig{Grace: time.Millisecond, Poll: 5 * time.Millisecond, Batch: 500, Workers: 64}
			n2 := brokertest.Start(b, o)
			deadline := time.Now().Add(10 * time.Minute)
			for {
				c, _, err := n2.Store.CountPushJobs(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if c == 0 && apnsSrv.Count() >= len(convs) {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("%d jobs left, %d sent of %d", c, apnsSrv.Count(), len(convs))
				}
				time.Sleep(2 * time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(apnsSrv.Count())/b.Elapsed().Seconds(), "pushes/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// storageDM is a direct message as the inbox hook stores it.
func storageDM(from, to, text string) storage.Message {
	return storage.Message{ID: uuid.NewString(), From: from, To: to, TS: time.Now().UnixMilli(), Type: protocol.TypeMsg,
		Data: protocol.TextBody(text), Inboxes: []string{protocol.UserInbox(to), protocol.UserInbox(from)}}
}
