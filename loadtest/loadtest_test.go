package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parleychat/parley/loadtest/baremochi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startBroker starts a bare mochi broker on a free loopback port.
func startBroker(t *testing.T) *baremochi.Broker {
	t.Helper()
	b, err := baremochi.Start(baremochi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// testLogger sends the run's logs to t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestRawAgainstBareMochi runs short raw loads against an in-process bare
// mochi broker and wants every message delivered exactly once, in order. The
// rates stay low: mochi v2.7.9 can deadlock delivering QoS 1 to an MQTT 5
// subscriber under load (see README.md), which this test would report as loss.
func TestRawAgainstBareMochi(t *testing.T) {
	b := startBroker(t)
	tests := map[string]struct {
		cfg Config
	}{
		"qos1 mqtt5 fan-out": {Config{QoS: 1, Protocol: 5, Publishers: 2, Subscribers: 2, Rate: 1000, Duration: 1500 * time.Millisecond}},
		"qos0 mqtt5 pairs":   {Config{QoS: 0, Protocol: 5, Publishers: 2, Subscribers: 2, Topics: 2, Rate: 1000, Duration: time.Second}},
		"qos1 mqtt3 fan-in":  {Config{QoS: 1, Protocol: 3, Publishers: 3, Subscribers: 1, Rate: 1000, Duration: time.Second}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var progress bytes.Buffer
			cfg := tc.cfg
			cfg.Workload = WorkloadRaw
			cfg.Brokers = []string{b.Addr()}
			cfg.Size = 100
			cfg.Progress = &progress
			cfg.ProgressInterval = 250 * time.Millisecond
			cfg.Logger = testLogger(t)
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			m, a := rep.Messages, rep.Accounting
			wantSent := int64(cfg.Rate * cfg.Duration.Seconds())
			fanout := int64(cfg.Subscribers)
			if cfg.Topics > 1 {
				fanout = 1
			}
			if m.Sent != wantSent || m.Shed != 0 || m.SendFailed != 0 {
				t.Errorf("messages = %+v, want %d sent", *m, wantSent)
			}
			if cfg.QoS == 1 && m.Acked != wantSent {
				t.Errorf("acked %d of %d", m.Acked, wantSent)
			}
			if a.Lost != 0 || a.Duplicates != 0 || a.Reordered != 0 || a.Unexpected != 0 || a.InDoubt != 0 ||
				a.Expected != wantSent*fanout || a.Delivered != a.Expected {
				t.Errorf("accounting = %+v, want %d delivered and nothing else", *a, wantSent*fanout)
			}
			if rep.Latency["publish_to_delivery"].Count != a.Delivered {
				t.Errorf("delivery latency count = %d", rep.Latency["publish_to_delivery"].Count)
			}
			if len(rep.Errors) > 0 || len(rep.Warnings) > 0 {
				t.Errorf("errors %v, warnings %v", rep.Errors, rep.Warnings)
			}
			if !strings.Contains(progress.String(), "sending") || len(rep.Series) < 3 {
				t.Errorf("progress:\n%s\nseries: %d points", progress.String(), len(rep.Series))
			}
			t.Logf("sent %d, delivered %d, p99 delivery %.3f ms", m.Sent, m.Delivered, rep.Latency["publish_to_delivery"].P99)
		})
	}
}

func TestConnectionsAgainstBareMochi(t *testing.T) {
	b := startBroker(t)
	rep, err := Run(context.Background(), Config{
		Workload: WorkloadConnections, Brokers: []string{b.Addr()}, Conns: 50, ConnRate: 500,
		Hold: 100 * time.Millisecond, Settle: 50 * time.Millisecond, Subscribe: true,
		PID:    os.Getpid(), // the broker runs in this process
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Connections
	if c.Target != 50 || c.Established != 50 || c.Failed != 0 || c.Drops != 0 {
		t.Errorf("connections = %+v", c)
	}
	if rep.Latency["connect"].Count != 50 {
		t.Errorf("connect latency count = %d", rep.Latency["connect"].Count)
	}
	if m := rep.Memory; m == nil || m.BeforeBytes == 0 || m.AfterRampBytes == 0 || m.Source != fmt.Sprintf("pid %d", os.Getpid()) {
		t.Errorf("memory = %+v", rep.Memory)
	}
	if rep.Messages != nil || rep.Accounting != nil {
		t.Errorf("a connections run has messages: %+v", rep.Messages)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := map[string]Config{
		"unknown workload":    {Workload: "nope"},
		"bad protocol":        {Workload: WorkloadRaw, Protocol: 4},
		"small size":          {Workload: WorkloadRaw, Size: 10},
		"qos 2":               {Workload: WorkloadRaw, QoS: 2},
		"ramp too long":       {Workload: WorkloadRaw, Ramp: time.Minute, Duration: time.Second},
		"one user":            {Workload: WorkloadDM, Users: 1},
		"short password":      {Workload: WorkloadDM, UserPassword: "short"},
		"admin":               {Workload: WorkloadDM, Admin: "nopassword"},
		"pid and metrics":     {Workload: WorkloadConnections, PID: 1, MetricsURL: "http://x"},
		"bad second broker":   {Workload: WorkloadRaw, Brokers: []string{"127.0.0.1:1883", "nope"}},
		"http without scheme": {Workload: WorkloadDM, HTTP: []string{"http://127.0.0.1:8080", "127.0.0.1:8081"}},
		"cross node above 1":  {Workload: WorkloadDM, CrossNode: 1.5},
		"negative cross node": {Workload: WorkloadDM, CrossNode: -0.1},
	}
	for name, cfg := range tests {
		if err := cfg.Defaults().Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
	for _, w := range Workloads() {
		if err := (Config{Workload: w}).Defaults().Validate(); err != nil {
			t.Errorf("defaults of %s: %v", w, err)
		}
	}
}
