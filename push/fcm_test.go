package push_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/push/pushtest"
)

// newFCM returns a sender for srv, with cfg's edits applied.
func newFCM(t *testing.T, srv *pushtest.FCMServer, edit func(*push.FCMConfig)) *push.FCM {
	t.Helper()
	cfg := srv.Config()
	if edit != nil {
		edit(&cfg)
	}
	f, err := push.NewFCM(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("NewFCM: %v", err)
	}
	return f
}

func fcmDevice(tok string) push.Device {
	return push.Device{Platform: push.PlatformFCM, Token: tok}
}

func TestFCMOutcomes(t *testing.T) {
	srv := pushtest.NewFCMServer(t)
	f := newFCM(t, srv, nil)
	tests := []struct {
		name  string
		reply pushtest.FCMReply
		want  push.Result
	}{
		{"sent", pushtest.FCMReply{},
			push.Result{Outcome: push.Sent, Status: 200}},
		{"unregistered", pushtest.FCMReply{Error: pushtest.FCMUnregistered},
			push.Result{Outcome: push.InvalidToken, Reason: "UNREGISTERED", Status: 404}},
		{"sender id mismatch", pushtest.FCMReply{Error: pushtest.FCMSenderIDMismatch},
			push.Result{Outcome: push.InvalidToken, Reason: "SENDER_ID_MISMATCH", Status: 403}},
		{"quota exceeded with Retry-After", pushtest.FCMReply{Error: pushtest.FCMQuotaExceeded, RetryAfter: time.Minute},
			push.Result{Outcome: push.Retryable, Reason: "QUOTA_EXCEEDED", Status: 429, RetryAfter: time.Minute}},
		{"internal", pushtest.FCMReply{Error: pushtest.FCMInternal},
			push.Result{Outcome: push.Retryable, Reason: "INTERNAL", Status: 500}},
		// A Retry-After beyond the SDK's 2-minute cap stops its own retries.
		{"unavailable with long Retry-After", pushtest.FCMReply{Error: pushtest.FCMUnavailable, RetryAfter: 5 * time.Minute},
			push.Result{Outcome: push.Retryable, Reason: "UNAVAILABLE", Status: 503, RetryAfter: 5 * time.Minute}},
		{"invalid argument", pushtest.FCMReply{Error: pushtest.FCMInvalidArgument},
			push.Result{Outcome: push.Permanent, Reason: "INVALID_ARGUMENT", Status: 400}},
		{"third-party auth error (bad config)", pushtest.FCMReply{Error: pushtest.FCMThirdPartyAuth},
			push.Result{Outcome: push.Permanent, Reason: "THIRD_PARTY_AUTH_ERROR", Status: 401}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := "fcm-token-" + token(i)[56:]
			srv.Reply(tok, tt.reply)
			before := srv.Count()
			got := f.Send(t.Context(), fcmDevice(tok), testNotification())
			checkResult(t, got, tt.want)
			if n := srv.Count() - before; n != 1 {
				t.Errorf("server got %d requests, want 1 (no retries inside Send)", n)
			}
			if tt.want.Outcome == push.Sent && !strings.HasPrefix(got.ID, "projects/parley-test/messages/") {
				t.Errorf("ID = %q, want the message name", got.ID)
			}
		})
	}
	if n := srv.AccessTokens(); n != 1 {
		t.Errorf("%d access tokens fetched, want 1 reused", n)
	}
}

func TestFCMRequest(t *testing.T) {
	srv := pushtest.NewFCMServer(t)
	f := newFCM(t, srv, nil)
	n := testNotification()
	checkResult(t, f.Send(t.Context(), fcmDevice("tok-1"), n), push.Result{Outcome: push.Sent, Status: 200})

	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	for _, c := range []struct{ what, got, want string }{
		{"token", r.Token, "tok-1"},
		{"android.priority", r.Priority, "high"},
		{"android.collapse_key", r.CollapseKey, "g/team"},
		{"title", r.Title, "Alice @ Team"},
		{"body", r.Body, "Lunch at noon?"},
		{"tag", r.Tag, "g/team"},
		{"sound", r.Sound, "default"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	// The TTL runs to the notification's expiry: a little under 24h.
	ttl, err := time.ParseDuration(r.TTL)
	if err != nil || ttl > push.DefaultTTL || ttl < push.DefaultTTL-time.Minute {
		t.Errorf("android.ttl = %q, want about %v", r.TTL, push.DefaultTTL)
	}
	if r.NotificationCount == nil || *r.NotificationCount != 3 {
		t.Errorf("notification_count = %v, want 3", r.NotificationCount)
	}
	for k, v := range map[string]string{"inbox": "g/team", "seq": "42", "id": n.Data["id"]} {
		if r.Data[k] != v {
			t.Errorf("data[%q] = %q, want %q", k, r.Data[k], v)
		}
	}
}

// TestFCMContentFree: with previews off the message carries no text and no
// name, and no tag or collapse key (which would name the conversation).
func TestFCMContentFree(t *testing.T) {
	srv := pushtest.NewFCMServer(t)
	f := newFCM(t, srv, nil)
	n := push.NewNotification(push.Message{SenderName: "Alice", Text: "Lunch at noon?", Badge: 3,
		Inbox: "u/bob", Conversation: "u/alice", Seq: 42, ID: "0190a7c2-7d1e-7c3a-9f00-000000000001", Time: time.Now()})
	checkResult(t, f.Send(t.Context(), fcmDevice("tok-1"), n), push.Result{Outcome: push.Sent, Status: 200})
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Title != "" || r.Body != push.HiddenPreview || r.Tag != "" || r.CollapseKey != "" {
		t.Errorf("content-free message = %+v", r)
	}
	for _, secret := range []string{"Alice", "alice", "Lunch"} {
		if strings.Contains(string(r.Raw), secret) {
			t.Errorf("request %s holds %q", r.Raw, secret)
		}
	}
	if len(r.Data) != 3 || r.Data["inbox"] != "u/bob" || r.Data["seq"] != "42" || r.Data["id"] != n.Data["id"] {
		t.Errorf("data = %v, want inbox, seq and id only", r.Data)
	}
}

func TestFCMFailuresBeforeSending(t *testing.T) {
	srv := pushtest.NewFCMServer(t)
	f := newFCM(t, srv, nil)
	expired := testNotification()
	expired.Expiry = time.Now().Add(-time.Second)
	tests := []struct {
		name    string
		dev     push.Device
		n       push.Notification
		want    push.Result
		wantErr error
	}{
		{"expired", fcmDevice("tok"), expired,
			push.Result{Outcome: push.Permanent, Reason: push.ReasonExpired}, push.ErrExpired},
		{"empty token", fcmDevice(""), testNotification(),
			push.Result{Outcome: push.InvalidToken, Reason: push.ReasonMalformedToken}, push.ErrBadDevice},
		{"apns device", push.Device{Platform: push.PlatformAPNs, Token: "tok"}, testNotification(),
			push.Result{Outcome: push.Permanent, Reason: push.ReasonBadDevice}, push.ErrBadDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := f.Send(t.Context(), tt.dev, tt.n)
			checkResult(t, got, tt.want)
			if !errors.Is(got.Err, tt.wantErr) {
				t.Errorf("Err = %v, want %v", got.Err, tt.wantErr)
			}
		})
	}
	if n := srv.Count(); n != 0 {
		t.Errorf("%d requests reached the server; refused sends must not", n)
	}
}

func TestFCMTimeouts(t *testing.T) {
	srv := pushtest.NewFCMServer(t)
	const timeout = 300 * time.Millisecond
	short := func(c *push.FCMConfig) { c.Timeout = timeout }

	// The SDK retries a 503 on its own, 0s then 1s, 2s, 4s apart: the
	// sender's timeout must end the call.
	t.Run("unavailable retried by the SDK until our timeout", func(t *testing.T) {
		f := newFCM(t, srv, short)
		srv.Reply("busy", pushtest.FCMReply{Error: pushtest.FCMUnavailable})
		before := srv.Count()
		start := time.Now()
		got := f.Send(t.Context(), fcmDevice("busy"), testNotification())
		took := time.Since(start)
		checkResult(t, got, push.Result{Outcome: push.Retryable, Reason: push.ReasonTimeout})
		if took > timeout+500*time.Millisecond {
			t.Errorf("Send took %v, want about %v", took, timeout)
		}
		if n := srv.Count() - before; n < 1 {
			t.Errorf("server got %d requests", n)
		}
	})
	t.Run("slow answer", func(t *testing.T) {
		f := newFCM(t, srv, short)
		srv.Reply("slow", pushtest.FCMReply{Delay: time.Minute})
		got := f.Send(t.Context(), fcmDevice("slow"), testNotification())
		checkResult(t, got, push.Result{Outcome: push.Retryable, Reason: push.ReasonTimeout})
	})
	t.Run("canceled", func(t *testing.T) {
		f := newFCM(t, srv, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		got := f.Send(ctx, fcmDevice("tok"), testNotification())
		checkResult(t, got, push.Result{Outcome: push.Retryable, Reason: push.ReasonCanceled})
	})
	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		f := newFCM(t, srv, func(c *push.FCMConfig) {
			c.Timeout = timeout
			c.Endpoint = "http://" + addr + "/v1"
		})
		got := f.Send(t.Context(), fcmDevice("tok"), testNotification())
		if got.Outcome != push.Retryable || (got.Reason != push.ReasonNetwork && got.Reason != push.ReasonTimeout) {
			t.Errorf("got %+v, want retryable network or timeout", got)
		}
	})
}

func TestFCMConfig(t *testing.T) {
	srv := pushtest.NewFCMServer(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	userCreds := write("user.json", `{"type":"authorized_user","client_id":"x","refresh_token":"y"}`)
	noProject := write("noproject.json", `{"type":"service_account","client_email":"a@b","private_key":"k"}`)
	tests := []struct {
		name   string
		cfg    push.FCMConfig
		want   []string
		wantIs error
	}{
		{"no credentials", push.FCMConfig{}, []string{"CredentialsFile", "required"}, nil},
		{"credentials file missing", push.FCMConfig{CredentialsFile: filepath.Join(dir, "sa.json")},
			[]string{"CredentialsFile", "sa.json"}, fs.ErrNotExist},
		{"not a service account", push.FCMConfig{CredentialsFile: userCreds},
			[]string{"CredentialsFile", "not a service-account key", "authorized_user"}, nil},
		{"no project id", push.FCMConfig{CredentialsFile: noProject}, []string{"ProjectID"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := push.NewFCM(t.Context(), tt.cfg, nil)
			if err == nil {
				t.Fatal("NewFCM succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
	t.Run("explicit project id", func(t *testing.T) {
		f := newFCM(t, srv, func(c *push.FCMConfig) { c.ProjectID = srv.ProjectID })
		checkResult(t, f.Send(t.Context(), fcmDevice("tok"), testNotification()), push.Result{Outcome: push.Sent, Status: 200})
	})
}
