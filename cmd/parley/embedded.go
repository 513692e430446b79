package main

import (
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/parleychat/parley/web"
)

// webApp serves the web messenger at /, telling it where MQTT over WebSocket
// is (wsEndpoint).
func webApp(cfg config, log *slog.Logger) http.Handler {
	if !web.Built() {
		log.Warn("the web app is not built: run make web (http://…/ says so too)")
	}
	return web.Handler(wsEndpoint(cfg), web.Options{Debug: cfg.WebDebug})
}

// wsEndpoint returns what the web app is told about MQTT over WebSocket
// (web.Handler): ws.public_url when it is set (a proxy in front); otherwise
// the port of ws.addr and ws.path, which the app dials on whatever host name
// the browser used to reach the page, with wss when the page came over
// HTTPS. When ws.addr serves TLS and http.addr does not, the page's scheme
// would be wrong: the app is given the whole wss:// URL, on the host name of
// the request.
func wsEndpoint(cfg config) func(*http.Request) string {
	if cfg.WSPublicURL != "" {
		return func(*http.Request) string { return cfg.WSPublicURL }
	}
	_, port, err := net.SplitHostPort(cfg.WSAddr)
	if err != nil || port == "" || port == "0" {
		port = "8083"
	}
	endpoint := ":" + port + cfg.WSPath
	if cfg.TLSCert == "" || !cfg.WSTLS || cfg.HTTPTLS {
		return func(*http.Request) string { return endpoint }
	}
	return func(r *http.Request) string {
		host := r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]") // an IPv6 address without a port
		return "wss://" + net.JoinHostPort(host, port) + cfg.WSPath
	}
}
