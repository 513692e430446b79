package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/storage"
)

func openEmbedded(ctx context.Context, cfg config, reg *prometheus.Registry, log *slog.Logger) (storage.Store, error) {
	return nil, errors.New("the embedded store is not available yet: set database.url (PARLEY_DATABASE_URL) to a postgres:// URL")
}

func webApp(log *slog.Logger) http.Handler { return nil }
