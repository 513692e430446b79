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

// newAPNs starts a fake APNs and a sender configured for it.
func newAPNs(t *testing.T) (*pushtest.APNsServer, *push.APNs) {
	t.Helper()
	srv := pushtest.NewAPNsServer(t)
	a, err := push.NewAPNs(srv.Config(), testLogger(t))
	if err != nil {
		t.Fatalf("NewAPNs: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return srv, a
}

func TestAPNsOutcomes(t *testing.T) {
	srv, a := newAPNs(t)
	since := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name    string
		env     push.Environment
		reply   pushtest.APNsReply
		want    push.Result
		wantEnv push.Environment // the host it must have gone to
	}{
		{"sent production", push.EnvProduction, pushtest.APNsReply{},
			push.Result{Outcome: push.Sent, Status: 200}, push.EnvProduction},
		{"sent sandbox", push.EnvSandbox, pushtest.APNsReply{},
			push.Result{Outcome: push.Sent, Status: 200}, push.EnvSandbox},
		{"sent environment unknown", push.EnvUnknown, pushtest.APNsReply{},
			push.Result{Outcome: push.Sent, Status: 200}, push.EnvProduction},
		{"410 unregistered", push.EnvProduction,
			pushtest.APNsReply{Status: 410, Reason: "Unregistered", Timestamp: since},
			push.Result{Outcome: push.InvalidToken, Reason: "Unregistered", Status: 410, InvalidSince: since}, push.EnvProduction},
		{"410 expired token", push.EnvSandbox,
			pushtest.APNsReply{Status: 410, Reason: "ExpiredToken", Timestamp: since},
			push.Result{Outcome: push.InvalidToken, Reason: "ExpiredToken", Status: 410, InvalidSince: since}, push.EnvSandbox},
		{"400 token not for topic", push.EnvProduction,
			pushtest.APNsReply{Status: 400, Reason: "DeviceTokenNotForTopic"},
			push.Result{Outcome: push.InvalidToken, Reason: "DeviceTokenNotForTopic", Status: 400}, push.EnvProduction},
		{"400 bad device token, production token to production", push.EnvProduction,
			pushtest.APNsReply{Status: 400, Reason: "BadDeviceToken"},
			push.Result{Outcome: push.InvalidToken, Reason: "BadDeviceToken", Status: 400}, push.EnvProduction},
		{"400 bad device token, sandbox token to sandbox", push.EnvSandbox,
			pushtest.APNsReply{Status: 400, Reason: "BadDeviceToken"},
			push.Result{Outcome: push.InvalidToken, Reason: "BadDeviceToken", Status: 400}, push.EnvSandbox},
		{"400 bad device token, unknown environment is no proof", push.EnvUnknown,
			pushtest.APNsReply{Status: 400, Reason: "BadDeviceToken"},
			push.Result{Outcome: push.Permanent, Reason: "BadDeviceToken", Status: 400}, push.EnvProduction},
		{"429 with Retry-After", push.EnvProduction,
			pushtest.APNsReply{Status: 429, Reason: "TooManyRequests", RetryAfter: 30 * time.Second},
			push.Result{Outcome: push.Retryable, Reason: "TooManyRequests", Status: 429, RetryAfter: 30 * time.Second}, push.EnvProduction},
		{"500", push.EnvProduction,
			pushtest.APNsReply{Status: 500, Reason: "InternalServerError"},
			push.Result{Outcome: push.Retryable, Reason: "InternalServerError", Status: 500}, push.EnvProduction},
		{"503 shutdown with Retry-After", push.EnvSandbox,
			pushtest.APNsReply{Status: 503, Reason: "Shutdown", RetryAfter: 2 * time.Minute},
			push.Result{Outcome: push.Retryable, Reason: "Shutdown", Status: 503, RetryAfter: 2 * time.Minute}, push.EnvSandbox},
		{"403 expired provider token", push.EnvProduction,
			pushtest.APNsReply{Status: 403, Reason: "ExpiredProviderToken"},
			push.Result{Outcome: push.Retryable, Reason: "ExpiredProviderToken", Status: 403}, push.EnvProduction},
		{"403 invalid provider token (bad config)", push.EnvProduction,
			pushtest.APNsReply{Status: 403, Reason: "InvalidProviderToken"},
			push.Result{Outcome: push.Permanent, Reason: "InvalidProviderToken", Status: 403}, push.EnvProduction},
		{"400 bad topic (bad config)", push.EnvProduction,
			pushtest.APNsReply{Status: 400, Reason: "BadTopic"},
			push.Result{Outcome: push.Permanent, Reason: "BadTopic", Status: 400}, push.EnvProduction},
		{"413 payload too large", push.EnvProduction,
			pushtest.APNsReply{Status: 413, Reason: "PayloadTooLarge", RetryAfter: time.Minute},
			push.Result{Outcome: push.Permanent, Reason: "PayloadTooLarge", Status: 413}, push.EnvProduction},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := token(1000 + i)
			srv.Reply(tok, tt.reply)
			before := len(srv.Requests())
			got := a.Send(t.Context(), push.Device{Platform: push.PlatformAPNs, Token: tok, Environment: tt.env}, testNotification())
			checkResult(t, got, tt.want)
			reqs := srv.Requests()
			if len(reqs) != before+1 {
				t.Fatalf("server got %d requests, want 1", len(reqs)-before)
			}
			if r := reqs[len(reqs)-1]; r.Token != tok || r.Environment != tt.wantEnv {
				t.Errorf("request went to %s for %s, want %s for %s", r.Environment, r.Token, tt.wantEnv, tok)
			}
		})
	}
}

func TestAPNsRequest(t *testing.T) {
	srv, a := newAPNs(t)
	n := testNotification()
	n.Data["aps"] = "must not clobber the aps dictionary"
	got := a.Send(t.Context(), push.Device{Platform: push.PlatformAPNs, Token: token(1), Environment: push.EnvProduction}, n)
	checkResult(t, got, push.Result{Outcome: push.Sent, Status: 200})

	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	for _, c := range []struct{ what, got, want string }{
		{"apns-topic", r.Topic, srv.Topic},
		{"apns-push-type", r.PushType, "alert"},
		{"apns-priority", r.Priority, "10"},
		{"apns-collapse-id", r.CollapseID, "g/team"},
		{"title", r.Title, "Alice @ Team"},
		{"body", r.Body, "Lunch at noon?"},
		{"sound", r.Sound, "default"},
		{"thread-id", r.ThreadID, "g/team"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if r.Expiration != n.Expiry.Unix() {
		t.Errorf("apns-expiration = %d, want %d", r.Expiration, n.Expiry.Unix())
	}
	if r.Badge == nil || *r.Badge != 3 {
		t.Errorf("badge = %v, want 3", r.Badge)
	}
	wantData := map[string]any{"inbox": "g/team", "seq": "42", "id": n.Data["id"]}
	if len(r.Data) != len(wantData) {
		t.Errorf("custom data = %v, want %v", r.Data, wantData)
	}
	for k, v := range wantData {
		if r.Data[k] != v {
			t.Errorf("data[%q] = %v, want %v", k, r.Data[k], v)
		}
	}
	if got.ID == "" {
		t.Error("no apns-id in the result")
	}
	if r.MutableContent != 0 {
		t.Errorf("mutable-content = %d on a notification with its preview", r.MutableContent)
	}
}

// TestAPNsContentFree: with previews off the payload carries no text and no
// name, no thread or collapse id, and is mutable-content for the app's
// Notification Service Extension.
func TestAPNsContentFree(t *testing.T) {
	srv, a := newAPNs(t)
	n := push.NewNotification(push.Message{SenderName: "Alice", GroupName: "Team", Text: "Lunch at noon?", Badge: 3,
		Inbox: "g/team", Seq: 42, ID: "0190a7c2-7d1e-7c3a-9f00-000000000001", Time: time.Now()})
	got := a.Send(t.Context(), push.Device{Platform: push.PlatformAPNs, Token: token(1), Environment: push.EnvProduction}, n)
	checkResult(t, got, push.Result{Outcome: push.Sent, Status: 200})
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Title != "" || r.Body != push.HiddenPreview || r.ThreadID != "" || r.CollapseID != "" || r.MutableContent != 1 {
		t.Errorf("content-free notification = %+v", r)
	}
	for _, secret := range []string{"Alice", "Team", "Lunch"} {
		if strings.Contains(string(r.Payload), secret) {
			t.Errorf("payload %s holds %q", r.Payload, secret)
		}
	}
	if len(r.Data) != 3 || r.Data["inbox"] != "g/team" || r.Data["seq"] != "42" || r.Data["id"] != n.Data["id"] {
		t.Errorf("custom data = %v, want inbox, seq and id only", r.Data)
	}
}

func TestAPNsDefaultsAndLimits(t *testing.T) {
	srv, a := newAPNs(t)
	dev := push.Device{Platform: push.PlatformAPNs, Token: token(2), Environment: push.EnvSandbox}

	t.Run("zero expiry means 24h, badge 0 is sent", func(t *testing.T) {
		n := testNotification()
		n.Expiry, n.Badge = time.Time{}, 0
		checkResult(t, a.Send(t.Context(), dev, n), push.Result{Outcome: push.Sent, Status: 200})
		r := srv.Requests()[len(srv.Requests())-1]
		if want := time.Now().Add(push.DefaultTTL).Unix(); r.Expiration < want-60 || r.Expiration > want {
			t.Errorf("apns-expiration = %d, want about %d", r.Expiration, want)
		}
		if r.Badge == nil || *r.Badge != 0 {
			t.Errorf("badge = %v, want 0 (clears the badge)", r.Badge)
		}
	})
	t.Run("long thread id gets a hashed collapse id", func(t *testing.T) {
		n := testNotification()
		n.ThreadID = "g/" + strings.Repeat("x", 64)
		checkResult(t, a.Send(t.Context(), dev, n), push.Result{Outcome: push.Sent, Status: 200})
		r := srv.Requests()[len(srv.Requests())-1]
		if len(r.CollapseID) != 64 || r.ThreadID != n.ThreadID {
			t.Errorf("collapse id %q (%d bytes), thread %q", r.CollapseID, len(r.CollapseID), r.ThreadID)
		}
	})

	before := srv.Count()
	tests := []struct {
		name    string
		dev     push.Device
		n       func() push.Notification
		want    push.Result
		wantErr error
	}{
		{"expired", dev, func() push.Notification {
			n := testNotification()
			n.Expiry = time.Now().Add(-time.Minute)
			return n
		}, push.Result{Outcome: push.Permanent, Reason: push.ReasonExpired}, push.ErrExpired},
		{"payload over 4 KiB", dev, func() push.Notification {
			n := testNotification()
			n.Data["big"] = strings.Repeat("x", 4096)
			return n
		}, push.Result{Outcome: push.Permanent, Reason: push.ReasonPayloadTooLarge}, push.ErrPayloadTooLarge},
		{"token not hex", push.Device{Platform: push.PlatformAPNs, Token: "not-a-token"}, testNotification,
			push.Result{Outcome: push.InvalidToken, Reason: push.ReasonMalformedToken}, push.ErrBadDevice},
		{"empty token", push.Device{Platform: push.PlatformAPNs}, testNotification,
			push.Result{Outcome: push.InvalidToken, Reason: push.ReasonMalformedToken}, push.ErrBadDevice},
		{"unknown environment", push.Device{Platform: push.PlatformAPNs, Token: token(3), Environment: "staging"}, testNotification,
			push.Result{Outcome: push.Permanent, Reason: push.ReasonBadDevice}, push.ErrBadDevice},
		{"fcm device", push.Device{Platform: push.PlatformFCM, Token: token(3)}, testNotification,
			push.Result{Outcome: push.Permanent, Reason: push.ReasonBadDevice}, push.ErrBadDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := a.Send(t.Context(), tt.dev, tt.n())
			checkResult(t, got, tt.want)
			if !errors.Is(got.Err, tt.wantErr) {
				t.Errorf("Err = %v, want %v", got.Err, tt.wantErr)
			}
		})
	}
	if n := srv.Count() - before; n != 0 {
		t.Errorf("%d requests reached the server; refused sends must not", n)
	}
}

func TestAPNsTransportFailures(t *testing.T) {
	srv := pushtest.NewAPNsServer(t)
	dev := push.Device{Platform: push.PlatformAPNs, Token: token(4), Environment: push.EnvProduction}

	t.Run("timeout", func(t *testing.T) {
		cfg := srv.Config()
		cfg.Timeout = 100 * time.Millisecond
		a, err := push.NewAPNs(cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		srv.Reply(dev.Token, pushtest.APNsReply{Delay: time.Minute})
		got := a.Send(t.Context(), dev, testNotification())
		checkResult(t, got, push.Result{Outcome: push.Retryable, Reason: push.ReasonTimeout})
		if !errors.Is(got.Err, context.DeadlineExceeded) {
			t.Errorf("Err = %v, want DeadlineExceeded", got.Err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		a, err := push.NewAPNs(srv.Config(), testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		got := a.Send(ctx, dev, testNotification())
		checkResult(t, got, push.Result{Outcome: push.Retryable, Reason: push.ReasonCanceled})
	})
	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cfg := srv.Config()
		cfg.ProductionURL = "https://" + addr
		a, err := push.NewAPNs(cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		got := a.Send(t.Context(), dev, testNotification())
		checkResult(t, got, push.Result{Outcome: push.Retryable, Reason: push.ReasonNetwork})
	})
}

func TestAPNsConfig(t *testing.T) {
	srv := pushtest.NewAPNsServer(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.p8")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		edit   func(*push.APNsConfig)
		want   []string // substrings of the error
		wantIs error
	}{
		{"everything missing", func(c *push.APNsConfig) { *c = push.APNsConfig{} },
			[]string{"KeyFile", "KeyID", "TeamID", "Topic"}, nil},
		{"key file missing", func(c *push.APNsConfig) { c.KeyFile = filepath.Join(dir, "AuthKey_X.p8") },
			[]string{"KeyFile", "AuthKey_X.p8"}, fs.ErrNotExist},
		{"key file not PEM", func(c *push.APNsConfig) { c.KeyFile = notPEM },
			[]string{"KeyFile", "not.p8", "not a .p8"}, nil},
		{"plain http", func(c *push.APNsConfig) { c.SandboxURL = "http://127.0.0.1:1" },
			[]string{"SandboxURL", "https://"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := srv.Config()
			tt.edit(&cfg)
			_, err := push.NewAPNs(cfg, nil)
			if err == nil {
				t.Fatal("NewAPNs succeeded")
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
}
