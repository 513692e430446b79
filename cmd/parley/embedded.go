package main

import (
	"log/slog"
	"net/http"
)

func webApp(log *slog.Logger) http.Handler { return nil }
