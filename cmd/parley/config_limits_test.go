package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestConnectionSettings: the connection and HTTP limits have the defaults
// configs/parley.yaml documents, and out-of-range values are refused with
// the setting's name.
func TestConnectionSettings(t *testing.T) {
	cfg, _, _, err := loadConfig([]string{"-config", "../../configs/parley.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defaults, _, _, err := loadConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []config{cfg, defaults} {
		got := []any{c.ConnectTimeout, c.MaxKeepalive, c.MaxConns, c.MaxConnsPerIP, c.ConnRatePerIP, c.ConnBurstPerIP,
			c.MetricsAddr, c.HTTPRead, c.HTTPReadHeader, c.HTTPIdle, c.HTTPMaxHeader}
		want := []any{10 * time.Second, 300 * time.Second, 50000, 1000, 50.0, 200,
			"", 30 * time.Second, 10 * time.Second, 120 * time.Second, 65536}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("setting %d: %v, want %v", i, got[i], want[i])
			}
		}
	}
	cases := map[string]struct {
		args []string
		want string
	}{
		"connect timeout zero":     {[]string{"-mqtt.connect_timeout", "0s"}, "mqtt.connect_timeout"},
		"keep-alive too long":      {[]string{"-mqtt.max_keepalive", "20h"}, "mqtt.max_keepalive"},
		"keep-alive not seconds":   {[]string{"-mqtt.max_keepalive", "1500ms"}, "mqtt.max_keepalive"},
		"max connections zero":     {[]string{"-limits.max_connections", "0"}, "limits.max_connections"},
		"per-address below -1":     {[]string{"-limits.max_connections_per_ip", "-5"}, "limits.max_connections_per_ip"},
		"rate zero":                {[]string{"-limits.connect_rate_per_ip", "0"}, "limits.connect_rate_per_ip"},
		"burst zero":               {[]string{"-limits.connect_burst_per_ip", "0"}, "limits.connect_burst_per_ip"},
		"read timeout zero":        {[]string{"-http.read_timeout", "0s"}, "http.read_timeout"},
		"header bytes too few":     {[]string{"-http.max_header_bytes", "10"}, "http.max_header_bytes"},
		"idle timeout unparseable": {[]string{"-http.idle_timeout", "soon"}, "http.idle_timeout"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, _, err := loadConfig(c.args, env(nil), io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to name %s", err, c.want)
			}
		})
	}
	// -1 turns a limit off.
	if _, _, _, err := loadConfig([]string{"-limits.max_connections", "-1", "-limits.max_connections_per_ip", "-1",
		"-limits.connect_rate_per_ip", "-1"}, env(nil), io.Discard); err != nil {
		t.Fatalf("-1 (no limit) refused: %v", err)
	}
}
