package main

import (
	"log/slog"
	"net"
	"net/http"

	"github.com/parleychat/parley/web"
)

// webApp serves the web messenger at /, telling it where MQTT over WebSocket
// is: the port of ws.addr and ws.path, on whatever host name the browser
// used to reach the page.
func webApp(wsAddr, wsPath string, log *slog.Logger) http.Handler {
	_, port, err := net.SplitHostPort(wsAddr)
	if err != nil || port == "" || port == "0" {
		port = "8083"
	}
	if !web.Built() {
		log.Warn("the web app is not built: run make web (http://…/ says so too)")
	}
	endpoint := ":" + port + wsPath
	return web.Handler(func(*http.Request) string { return endpoint })
}
