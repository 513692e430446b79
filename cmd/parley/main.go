// Command parley runs a Parley node: an MQTT chat server storing messages in
// Postgres (or the embedded store). See README.md and configs/parley.yaml.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/broker"
	"github.com/parleychat/parley/push"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	// Subcommands (see migrate.go); anything else configures and runs a node.
	if len(args) > 0 && args[0] == migrateCommand {
		return runMigrate(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == usersCommand {
		return runUsers(ctx, args[1:], getenv, stdout, stderr) // users.go
	}
	cfg, path, check, err := loadConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, migrateSummary+usersSummary)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "parley: configuration: %v\n", err)
		return 2
	}
	if check {
		if path != "" {
			fmt.Fprintf(stdout, "configuration from %s is valid:\n", path)
		} else {
			fmt.Fprintln(stdout, "configuration (defaults and environment) is valid:")
		}
		cfg.print(stdout)
		return 0
	}
	log := newLogger(cfg, stderr)
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("parley stopped", "error", err)
		return 1
	}
	return 0
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	store, err := openStore(ctx, cfg, reg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Warn("close store", "error", err)
		}
	}()
	admins, _ := cfg.admins()
	accounts, err := auth.New(auth.Config{TokenTTL: cfg.TokenTTL, TokenMax: cfg.TokenMax, OpenRegistration: cfg.OpenReg,
		Admins: admins, BcryptCost: cfg.BcryptCost,
		Throttle: cfg.throttle(), Log: log.With("component", "auth")}, store)
	if err != nil {
		return err
	}
	pushRouter, closePush, err := newPushRouter(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closePush()
	var pushSender push.Sender
	if pushRouter != nil {
		pushSender = pushRouter
	}
	authLim, inboxLim, presenceLim := cfg.clientLimits()
	cluster, err := cfg.cluster()
	if err != nil {
		return err
	}
	srv, err := broker.New(broker.Config{
		MQTTAddr: cfg.MQTTAddr, WSAddr: cfg.WSAddr, WSPath: cfg.WSPath, AllowedOrigins: cfg.AllowedOrigins,
		HTTPAddr: cfg.HTTPAddr, MaxPayload: cfg.MaxPayload, WritesPending: cfg.WritesPending, MaxGroupMembers: cfg.MaxMembers, WriteTimeout: cfg.WriteTimeout,
		Pprof: cfg.Pprof, TLS: cfg.tls(),
		// Connections and HTTP (hardening): limits and timeouts.
		MetricsAddr: cfg.MetricsAddr, AdminAddr: cfg.AdminAddr, ConnectTimeout: cfg.ConnectTimeout, MaxKeepalive: cfg.MaxKeepalive,
		MaxConnections: cfg.MaxConns, MaxConnectionsPerIP: cfg.MaxConnsPerIP, ConnectRatePerIP: cfg.ConnRatePerIP,
		ConnectBurstPerIP: cfg.ConnBurstPerIP, HTTPReadTimeout: cfg.HTTPRead, HTTPReadHeaderTimeout: cfg.HTTPReadHeader,
		HTTPIdleTimeout: cfg.HTTPIdle, HTTPMaxHeaderBytes: cfg.HTTPMaxHeader,
		// Clients (hardening): per-connection and per-user limits.
		Auth: authLim, Inbox: inboxLim, Presence: presenceLim, GroupLimits: cfg.groupLimits(),
		Push: push.ServiceConfig{Grace: cfg.PushGrace}, MaxPushDevices: cfg.PushMaxDevices,
		Maintenance: broker.MaintenanceConfig{Interval: cfg.MaintInterval, DedupAge: cfg.MaintDedupAge,
			CursorAge: cfg.MaintCursorAge, PushAckAge: cfg.MaintAckAge,
			DeliveryAge: cfg.MaintDelivAge},
		Cluster: cluster, SessionCheck: cfg.SessionCheck,
	}, broker.Deps{Store: store, Accounts: accounts, Log: log, Registry: reg, Static: webApp(cfg, log),
		Push: pushSender})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down: draining connections and pending stores")
	start := time.Now()
	srv.Close()
	log.Info("shut down", "took", time.Since(start).Round(time.Millisecond))
	return nil
}
