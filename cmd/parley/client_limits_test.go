package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/hooks"
)

// TestClientLimitSettings: the limits on what one client or one user may
// cost reach the hooks' configurations with the defaults the file
// documents, and out-of-range values are refused with the setting's name.
func TestClientLimitSettings(t *testing.T) {
	cfg, _, _, err := loadConfig([]string{"-config", "../../configs/parley.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, in, p := cfg.clientLimits()
	if a != (hooks.AuthConfig{MaxClientID: 128, MaxConnectionsPerUser: 16}) {
		t.Errorf("auth limits %+v", a)
	}
	want := hooks.InboxConfig{Rate: 50, Burst: 100, UserRate: 100, UserBurst: 200, RateStrikes: 100, StrikeWindow: 10 * time.Second,
		ErrorEntries: 10, ErrorWindow: time.Minute, MaxTopicLen: 256, MaxTopicLevels: 8, MaxFilters: 16,
		MaxSessionsPerUser: 32, MaxSessionExpiry: hooks.DefaultMaxSessionExpiry}
	if in.Rate != want.Rate || in.Burst != want.Burst || in.UserRate != want.UserRate || in.UserBurst != want.UserBurst ||
		in.RateStrikes != want.RateStrikes || in.StrikeWindow != want.StrikeWindow || in.ErrorEntries != want.ErrorEntries ||
		in.ErrorWindow != want.ErrorWindow || in.MaxTopicLen != want.MaxTopicLen || in.MaxTopicLevels != want.MaxTopicLevels ||
		in.MaxFilters != want.MaxFilters || in.MaxSessionsPerUser != want.MaxSessionsPerUser || in.MaxSessionExpiry != want.MaxSessionExpiry {
		t.Errorf("inbox limits %+v, want %+v", in, want)
	}
	if p != (hooks.PresenceConfig{RefusalRate: 10, RefusalBurst: 50}) {
		t.Errorf("presence limits %+v", p)
	}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"client id too short":      {[]string{"-limits.max_client_id", "10"}, "limits.max_client_id"},
		"connections per user 0":   {[]string{"-limits.max_connections_per_user", "0"}, "limits.max_connections_per_user"},
		"sessions per user -2":     {[]string{"-limits.max_sessions_per_user", "-2"}, "limits.max_sessions_per_user"},
		"user rate 0":              {[]string{"-limits.user_rate", "0"}, "limits.user_rate"},
		"topic shorter than inbox": {[]string{"-limits.max_topic_len", "10"}, "limits.max_topic_len"},
		"one level":                {[]string{"-limits.max_topic_levels", "1"}, "limits.max_topic_levels"},
		"no filters":               {[]string{"-limits.max_subscribe_filters", "0"}, "limits.max_subscribe_filters"},
		"session expiry 0":         {[]string{"-mqtt.max_session_expiry", "0s"}, "mqtt.max_session_expiry"},
		"error window 0":           {[]string{"-limits.error_window", "0s"}, "limits.error_window"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, _, err := loadConfig(tc.args, env(nil), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}
