package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/sqlite"
)

// openStore opens the store the configuration selects.
func openStore(ctx context.Context, cfg config, reg *prometheus.Registry, log *slog.Logger) (storage.Store, error) {
	if cfg.DatabaseURL == "" {
		return openEmbedded(ctx, cfg, reg, log)
	}
	if cfg.DatabaseCreate {
		if err := postgres.CreateDatabase(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		}
	}
	st, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, Writers: cfg.Writers, MaxBatch: cfg.MaxBatch,
		OnBatch: storeMetrics(reg), PushJobs: cfg.pushEnabled()}, log.With("component", "store"))
	if err != nil {
		return nil, err
	}
	log.Info("store: postgres", "url", redactURL(cfg.DatabaseURL))
	return st, nil
}

// openEmbedded opens the embedded SQLite store at database.path.
func openEmbedded(ctx context.Context, cfg config, reg *prometheus.Registry, log *slog.Logger) (storage.Store, error) {
	st, err := sqlite.Open(ctx, sqlite.Config{Path: cfg.DatabasePath, MaxBatch: cfg.MaxBatch, OnBatch: storeMetrics(reg),
		PushJobs: cfg.pushEnabled()},
		log.With("component", "store"))
	if err != nil {
		return nil, err
	}
	log.Info("store: embedded (SQLite); set database.url to a postgres:// URL for Postgres", "path", cfg.DatabasePath)
	return st, nil
}

// storeMetrics registers the group-commit metrics and returns the observer
// both stores call after each transaction.
func storeMetrics(reg prometheus.Registerer) func(size int, took time.Duration, err error) {
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parley_store_batch_size",
		Help: "Messages per group-commit transaction.", Buckets: prometheus.ExponentialBuckets(1, 2, 11)})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parley_store_batch_seconds",
		Help: "Duration of group-commit transactions.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_store_batch_errors_total",
		Help: "Failed group-commit transactions."})
	reg.MustRegister(batch, latency, errs)
	return func(size int, took time.Duration, err error) {
		batch.Observe(float64(size))
		latency.Observe(took.Seconds())
		if err != nil {
			errs.Inc()
		}
	}
}
