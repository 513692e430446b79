package broker

import (
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// originAllowed decides whether a browser page may open a WebSocket to the
// node, from its Origin header, against a cross-site WebSocket hijacking:
// any page the browser shows could otherwise open an MQTT connection
// (cookies are not sent, but a page can carry stolen or guessed
// credentials, and the connection counts against the node's limits).
//
// A request without Origin is not a browser's (mosquitto, paho, MQTT.js on
// Node): always allowed. With allowed empty, a page of the same host name
// as the WebSocket request is allowed, whatever its scheme and port: the
// web app is served on http.addr and dials ws.addr on the host name it was
// loaded from. Otherwise the origin must be listed exactly, or the list
// holds "*".
func originAllowed(allowed []string, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(allowed) > 0 {
		return slices.Contains(allowed, "*") || slices.Contains(allowed, origin)
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Hostname(), hostname(r.Host))
}

// hostname is host without its port (and an IPv6 address without its
// brackets).
func hostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}

// withHSTS tells browsers to use HTTPS only, for a year, on a node that
// serves its HTTP listener with TLS [RFC 6797]. Not includeSubDomains: the
// operator's other hosts are not Parley's to decide.
func withHSTS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}
