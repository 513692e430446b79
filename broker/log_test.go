package broker

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// TestMochiLogQuiets: what a client chooses (a short keep-alive, a refused
// publish) does not reach the node's log at info level; other warnings do.
func TestMochiLogQuiets(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(mochiLog{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})})
	log.Warn(mqtt.ErrMinimumKeepalive.Error(), "client", "c1", "keepalive", 1)
	log.Error("publish packet error", "client", "c1", "packet", "dump")
	log.Warn("client store quota reached", "client", "c2")
	out := buf.String()
	if strings.Contains(out, "c1") || !strings.Contains(out, "c2") {
		t.Fatalf("info-level log:\n%s", out)
	}
	buf.Reset()
	log = slog.New(mochiLog{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})})
	log.Warn(mqtt.ErrMinimumKeepalive.Error(), "client", "c1", "keepalive", 1)
	if !strings.Contains(buf.String(), "level=DEBUG") || !strings.Contains(buf.String(), "short keep-alive") {
		t.Fatalf("debug-level log:\n%s", buf.String())
	}
}
