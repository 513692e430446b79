// Package baremochi runs a bare mochi-mqtt broker: one TCP listener, an
// allow-all auth hook and no other hooks. It is the reference the load tester
// compares Parley with (same broker library, none of Parley's work), and the
// broker its own tests run against.
package baremochi

import (
	"fmt"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Config configures a Broker.
type Config struct {
	// Addr is the TCP address to listen on (default 127.0.0.1:0: a free port
	// on loopback).
	Addr string
	// MaxClientWritesPending sizes each client's outbound queue; 0 keeps
	// mochi's default (8192). Messages for a client whose queue is full are
	// dropped, QoS 1 included.
	MaxClientWritesPending int32
	// Logger receives the broker's logs (default: discarded).
	Logger *slog.Logger
}

// Broker is a running bare mochi broker.
type Broker struct {
	server *mqtt.Server
	tcp    *listeners.TCP
	closed bool
}

// Start starts a broker and returns once it accepts connections.
func Start(cfg Config) (*Broker, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	if cfg.MaxClientWritesPending > 0 {
		caps.MaximumClientWritesPending = cfg.MaxClientWritesPending
	}
	s := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: cfg.Logger})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("bare mochi: add auth hook: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Addr})
	if err := s.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("bare mochi: listen on %s: %w", cfg.Addr, err)
	}
	if err := s.Serve(); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("bare mochi: serve: %w", err)
	}
	return &Broker{server: s, tcp: tcp}, nil
}

// Addr returns the address the broker listens on, with the port it got.
func (b *Broker) Addr() string { return b.tcp.Address() }

// Server returns the mochi server, e.g. to read its Info counters.
func (b *Broker) Server() *mqtt.Server { return b.server }

// closeTimeout bounds Close.
const closeTimeout = 5 * time.Second

// Close stops the broker and disconnects its clients. Safe to call twice.
// Disconnecting takes each client's locks, so a client stuck in a mochi
// deadlock (see loadtest/README.md) would hold Close forever: after
// closeTimeout it gives up and says so.
func (b *Broker) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	done := make(chan error, 1)
	go func() { done <- b.server.Close() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("bare mochi: close: %w", err)
		}
		return nil
	case <-time.After(closeTimeout):
		return fmt.Errorf("bare mochi: close: not done after %v: a client is stuck", closeTimeout)
	}
}
