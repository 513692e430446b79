package push_test

import (
	"testing"

	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/push/pushtest"
)

// benchSend measures notifications per second through s, one at a time and
// with many in flight. Both fakes run in the same process, on loopback:
// the figures are our side's cost (encoding, signing, HTTP), not a
// provider's.
func benchSend(b *testing.B, s push.Sender, d push.Device) {
	n := testNotification()
	if r := s.Send(b.Context(), d, n); r.Outcome != push.Sent { // connect, fetch tokens
		b.Fatalf("warm-up send: %+v", r)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := s.Send(b.Context(), d, n); r.Outcome != push.Sent {
				b.Fatalf("send: %+v", r)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notifs/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16) // 16 senders per core
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if r := s.Send(b.Context(), d, n); r.Outcome != push.Sent {
					b.Errorf("send: %+v", r)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notifs/s")
	})
}

func BenchmarkAPNs(b *testing.B) {
	srv := pushtest.NewAPNsServer(b)
	srv.SetRecording(false)
	a, err := push.NewAPNs(srv.Config(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	benchSend(b, a, push.Device{Platform: push.PlatformAPNs, Token: token(1), Environment: push.EnvProduction})
}

func BenchmarkFCM(b *testing.B) {
	srv := pushtest.NewFCMServer(b)
	srv.SetRecording(false)
	f, err := push.NewFCM(b.Context(), srv.Config(), nil)
	if err != nil {
		b.Fatal(err)
	}
	benchSend(b, f, push.Device{Platform: push.PlatformFCM, Token: "fcm-bench-token"})
}

func BenchmarkNewNotification(b *testing.B) {
	m := push.Message{SenderName: "Alice", GroupName: "Team", Text: string(make([]rune, 500)), Preview: true,
		Badge: 3, Inbox: "g/team", Seq: 42, ID: "m1"}
	b.ReportAllocs()
	for b.Loop() {
		push.NewNotification(m)
	}
}
