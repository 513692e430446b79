package push_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/push"
)

func TestBackoff(t *testing.T) {
	const samples = 2000
	for attempt := -1; attempt <= 40; attempt++ {
		ceil := push.BackoffCap
		if a := max(attempt, 1); a <= 20 {
			ceil = min(ceil, push.BackoffBase<<(a-1))
		}
		var lo, hi time.Duration = ceil, 0
		for range samples {
			d := push.Backoff(attempt, 0)
			if d < 0 || d > ceil {
				t.Fatalf("Backoff(%d, 0) = %v, want within [0, %v]", attempt, d, ceil)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		// Full jitter spreads over the whole range (the chance that 2000
		// draws all miss a half is 2^-2000).
		if lo > ceil/2 || hi < ceil/2 {
			t.Errorf("Backoff(%d, 0) drew only [%v, %v] of [0, %v]", attempt, lo, hi, ceil)
		}
	}
	for _, ra := range []time.Duration{time.Second, 30 * time.Second, time.Hour} {
		for _, attempt := range []int{1, 5, 30} {
			for range samples / 10 {
				if d := push.Backoff(attempt, ra); d < ra {
					t.Fatalf("Backoff(%d, %v) = %v, less than Retry-After", attempt, ra, d)
				}
			}
		}
	}
	if d := push.Backoff(1, time.Hour); d != time.Hour {
		t.Errorf("Backoff(1, 1h) = %v, want 1h (Retry-After over the cap wins)", d)
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[push.Outcome]string{
		push.Sent: "sent", push.InvalidToken: "invalid_token", push.Retryable: "retryable",
		push.Permanent: "permanent", 0: "outcome_0",
	} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", o, got, want)
		}
	}
}

// stubSender records the devices it is asked to send to.
type stubSender struct {
	mu      sync.Mutex
	devices []push.Device
}

func (s *stubSender) Send(_ context.Context, d push.Device, _ push.Notification) push.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices = append(s.devices, d)
	return push.Result{Outcome: push.Sent, ID: "stub"}
}

func TestRouter(t *testing.T) {
	apns := &stubSender{}
	r := push.NewRouter(map[push.Platform]push.Sender{push.PlatformAPNs: apns, push.PlatformFCM: nil}, testLogger(t))
	n := testNotification()

	got := r.Send(t.Context(), push.Device{Platform: push.PlatformAPNs, Token: "a"}, n)
	if got.Outcome != push.Sent || len(apns.devices) != 1 || apns.devices[0].Token != "a" {
		t.Errorf("apns device: %+v, stub saw %v", got, apns.devices)
	}
	for _, p := range []push.Platform{push.PlatformFCM, "webpush", ""} {
		got := r.Send(t.Context(), push.Device{Platform: p, Token: "b"}, n)
		if got.Outcome != push.Permanent || got.Reason != push.ReasonNotConfigured || !errors.Is(got.Err, push.ErrNotConfigured) {
			t.Errorf("platform %q: %+v, want permanent not_configured", p, got)
		}
		if !strings.Contains(got.Err.Error(), "provider not configured") || !strings.Contains(got.Err.Error(), string(p)+`"`) {
			t.Errorf("platform %q: error %q does not say which platform is not configured", p, got.Err)
		}
	}
	if !r.Configured(push.PlatformAPNs) || r.Configured(push.PlatformFCM) {
		t.Error("Configured disagrees with the senders given")
	}
	if len(apns.devices) != 1 {
		t.Errorf("apns stub got %d sends, want 1", len(apns.devices))
	}
}

func TestLogSender(t *testing.T) {
	var buf bytes.Buffer
	l := push.NewLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	r := push.NewRouter(map[push.Platform]push.Sender{push.PlatformAPNs: l, push.PlatformFCM: l}, nil)
	for _, d := range []push.Device{
		{Platform: push.PlatformAPNs, Token: token(9), Environment: push.EnvSandbox},
		{Platform: push.PlatformFCM, Token: "fcm-token"},
	} {
		if got := r.Send(t.Context(), d, testNotification()); got.Outcome != push.Sent || got.Err != nil {
			t.Errorf("%s: %+v, want sent", d.Platform, got)
		}
	}
	out := buf.String()
	for _, want := range []string{`"platform":"apns"`, `"platform":"fcm"`, `"environment":"sandbox"`, `"badge":3`,
		`"body_len":14`, `"provider":"log"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	// Message text stays out of logs kept at Info.
	for _, secret := range []string{"Lunch at noon?", "Alice @ Team", token(9)} {
		if strings.Contains(out, secret) {
			t.Errorf("the Info log holds %q:\n%s", secret, out)
		}
	}
	// At Debug, a developer sees what would be sent.
	buf.Reset()
	l = push.NewLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if got := l.Send(t.Context(), push.Device{Platform: push.PlatformFCM, Token: "fcm-token"}, testNotification()); got.Outcome != push.Sent {
		t.Fatalf("%+v, want sent", got)
	}
	for _, want := range []string{`"title":"Alice @ Team"`, `"body":"Lunch at noon?"`, `"inbox":"g/team"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the Debug log lacks %s:\n%s", want, buf.String())
		}
	}
}

func TestResultLogValue(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("x", "result", push.Result{Outcome: push.Retryable, Reason: "TooManyRequests", Status: 429,
		RetryAfter: 30 * time.Second, Err: errors.New("apns: 429")})
	for _, want := range []string{"result.outcome=retryable", "result.reason=TooManyRequests", "result.status=429",
		"result.retry_after=30s", `result.err="apns: 429"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log %q lacks %s", buf.String(), want)
		}
	}
}
