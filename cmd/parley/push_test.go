package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/push/pushtest"
)

// TestPushProviders: providers are built from the push.* settings, and each
// one left out is named in one log line.
func TestPushProviders(t *testing.T) {
	apnsSrv, fcmSrv := pushtest.NewAPNsServer(t), pushtest.NewFCMServer(t)
	cases := map[string]struct {
		env          map[string]string
		off          bool
		apns, fcm    bool
		wantLog      []string
		wantErrorHas string
	}{
		"none": {env: nil, off: true, wantLog: []string{"push notifications off"}},
		"log only": {env: map[string]string{"PARLEY_PUSH_LOG": "true"}, apns: true, fcm: true,
			wantLog: []string{"APNs not configured", "FCM not configured"}},
		"apns": {env: map[string]string{"PARLEY_PUSH_APNS_KEY_FILE": apnsSrv.KeyFile, "PARLEY_PUSH_APNS_KEY_ID": apnsSrv.KeyID,
			"PARLEY_PUSH_APNS_TEAM_ID": apnsSrv.TeamID, "PARLEY_PUSH_APNS_TOPIC": apnsSrv.Topic}, apns: true,
			wantLog: []string{"FCM not configured"}},
		"fcm": {env: map[string]string{"PARLEY_PUSH_FCM_CREDENTIALS_FILE": fcmSrv.CredentialsFile}, fcm: true,
			wantLog: []string{"APNs not configured"}},
		"apns without key id": {env: map[string]string{"PARLEY_PUSH_APNS_KEY_FILE": apnsSrv.KeyFile}, wantErrorHas: "KeyID"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			cfg, _, _, err := loadConfig([]string{"-config", "/dev/null"}, env(c.env), &stderr)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.PushGrace != 3*time.Second {
				t.Fatalf("push.grace = %v, want 3s", cfg.PushGrace)
			}
			var logs bytes.Buffer
			r, closeFn, err := newPushRouter(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			defer closeFn()
			if c.wantErrorHas != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErrorHas) {
					t.Fatalf("err = %v, want it to mention %s", err, c.wantErrorHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (r == nil) != c.off {
				t.Fatalf("router = %v, want off = %v", r, c.off)
			}
			if r != nil && (r.Configured(push.PlatformAPNs) != c.apns || r.Configured(push.PlatformFCM) != c.fcm) {
				t.Fatalf("configured: apns %v fcm %v, want %v %v", r.Configured(push.PlatformAPNs), r.Configured(push.PlatformFCM), c.apns, c.fcm)
			}
			for _, want := range c.wantLog {
				if strings.Count(logs.String(), want) != 1 {
					t.Errorf("log lacks one %q:\n%s", want, logs.String())
				}
			}
		})
	}
}

// TestPushMaxDevices: push.max_devices has the default configs/parley.yaml
// documents, takes its environment variable, and refuses values out of
// range, naming itself.
func TestPushMaxDevices(t *testing.T) {
	for _, args := range [][]string{nil, {"-config", "../../configs/parley.yaml"}} {
		cfg, _, _, err := loadConfig(args, env(nil), io.Discard)
		if err != nil || cfg.PushMaxDevices != 10 {
			t.Fatalf("loadConfig(%q): push.max_devices = %d, %v; want 10", args, cfg.PushMaxDevices, err)
		}
	}
	cfg, _, _, err := loadConfig(nil, env(map[string]string{"PARLEY_PUSH_MAX_DEVICES": "3"}), io.Discard)
	if err != nil || cfg.PushMaxDevices != 3 {
		t.Fatalf("PARLEY_PUSH_MAX_DEVICES=3: %d, %v", cfg.PushMaxDevices, err)
	}
	for _, v := range []string{"0", "-1", "1001"} {
		if _, _, _, err := loadConfig([]string{"-push.max_devices", v}, env(nil), io.Discard); err == nil ||
			!strings.Contains(err.Error(), "push.max_devices") {
			t.Errorf("push.max_devices %s: err = %v, want it refused by name", v, err)
		}
	}
}
