package push_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parleychat/parley/push"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger returns a logger that writes to the test's log, at Debug.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// token returns a distinct well-formed APNs device token (32 bytes in hex).
func token(i int) string { return fmt.Sprintf("%064x", i) }

// testNotification is a typical notification for a group message.
func testNotification() push.Notification {
	return push.NewNotification(push.Message{
		SenderName: "Alice",
		GroupName:  "Team",
		Text:       "Lunch at noon?",
		Preview:    true,
		Badge:      3,
		Inbox:      "g/team",
		Seq:        42,
		ID:         "0190a7c2-7d1e-7c3a-9f00-000000000001",
		Time:       time.Now(),
	})
}

// checkResult compares the parts of a Result a case cares about.
func checkResult(t *testing.T, got push.Result, want push.Result) {
	t.Helper()
	if got.Outcome != want.Outcome {
		t.Errorf("Outcome = %v, want %v (result %+v)", got.Outcome, want.Outcome, got)
	}
	if got.Reason != want.Reason {
		t.Errorf("Reason = %q, want %q", got.Reason, want.Reason)
	}
	if got.Status != want.Status {
		t.Errorf("Status = %d, want %d", got.Status, want.Status)
	}
	if got.RetryAfter != want.RetryAfter {
		t.Errorf("RetryAfter = %v, want %v", got.RetryAfter, want.RetryAfter)
	}
	if !got.InvalidSince.Equal(want.InvalidSince) {
		t.Errorf("InvalidSince = %v, want %v", got.InvalidSince, want.InvalidSince)
	}
	if (got.Err == nil) != (want.Outcome == push.Sent) {
		t.Errorf("Err = %v with outcome %v", got.Err, got.Outcome)
	}
	if want.Outcome == push.Sent && got.ID == "" {
		t.Errorf("sent without an ID")
	}
}
