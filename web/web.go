// Package web serves Parley's web messenger: the React app in this folder,
// built by `make web` into dist/ and embedded in the binary. index.html is
// served for / and for every path of the app (it routes in the browser),
// with the MQTT-over-WebSocket endpoint filled in; the hashed assets are
// cached for good. A binary built before the app answers a page saying how
// to build it.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"
)

//go:embed all:dist
var dist embed.FS

// wsMeta is the tag of index.html whose content the handler fills in with
// the WebSocket endpoint.
const wsMeta = `<meta name="parley-ws" content="">`

// debugMeta is added to index.html when Options.Debug is set.
const debugMeta = `<meta name="parley-debug" content="1">`

// Options configure the handler.
type Options struct {
	// Debug gives the page's scripts a handle on the app's client and store
	// (window.parley), for browser tests and debugging from the console.
	// Default false: a script injected into the page finds no handle on
	// the signed-in client.
	Debug bool
}

// Handler serves the embedded app. wsURL tells the app where MQTT over
// WebSocket is for a request: a port ("8083"), a port and path
// (":8083/mqtt"), or a full URL ("wss://chat.example.com/mqtt"). The app
// connects to ws(s)://{its own host name}:{port}{path} for the first two.
//
// The page carries a Content Security Policy that lets it run only the
// app's own scripts and styles and connect only to its own origin and the
// WebSocket endpoint, and may not be framed (docs/security.md, Web app).
func Handler(wsURL func(r *http.Request) string, o Options) http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded: it is always there
	}
	return newHandler(sub, wsURL, o)
}

// Built reports whether the binary embeds a built app.
func Built() bool {
	_, err := fs.Stat(dist, "dist/index.html")
	return err == nil
}

type handler struct {
	files fs.FS
	wsURL func(*http.Request) string
	opts  Options
	index []byte   // nil when the app is not built
	cache sync.Map // path -> *asset
}

// asset is a file's content with what is computed once: its ETag and,
// for text, its gzipped form.
type asset struct {
	body  []byte
	gz    []byte
	etag  string
	ctype string
}

func newHandler(files fs.FS, wsURL func(*http.Request) string, o Options) *handler {
	h := &handler{files: files, wsURL: wsURL, opts: o}
	if b, err := fs.ReadFile(files, "index.html"); err == nil {
		h.index = b
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if h.index == nil {
		notBuilt(w)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" || name == "index.html" {
		h.serveIndex(w, r)
		return
	}
	if a := h.asset(name); a != nil {
		if strings.HasPrefix(name, "assets/") {
			// Vite names these by content hash: a new build has new names.
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "public, max-age=3600")
		}
		h.serveAsset(w, r, a)
		return
	}
	// A missing asset or top-level file (/robots.txt) is a 404; any other
	// path is a page of the app (/c/u/bob.smith too: ids may have dots).
	if strings.HasPrefix(name, "assets/") || (!strings.Contains(name, "/") && path.Ext(name) != "") {
		http.NotFound(w, r)
		return
	}
	h.serveIndex(w, r)
}

func (h *handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	ws := ""
	if h.wsURL != nil {
		ws = h.wsURL(r)
	}
	meta := `<meta name="parley-ws" content="` + html.EscapeString(ws) + `">`
	if h.opts.Debug {
		meta += debugMeta
	}
	body := bytes.Replace(h.index, []byte(wsMeta), []byte(meta), 1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Always revalidated: it names the current build's assets.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("Content-Security-Policy", contentSecurityPolicy(r, ws))
	w.Header().Set("X-Frame-Options", "DENY") // for browsers without frame-ancestors
	w.Header().Set("Cross-Origin-Opener-Policy", "same-origin")
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(body))
}

// contentSecurityPolicy is the app page's policy: scripts, styles, fonts
// and images from the page's origin only (the build has no inline script
// or style; React sets styles through the DOM, which the policy allows),
// workers from the app's scripts (MQTT.js keeps its timers in a worker
// made from a blob: URL, which background tabs do not slow down),
// no plugins, no <base>, forms only to the origin, no framing; fetches to
// the origin (the API) and WebSockets to the MQTT endpoint, which is on
// another port: ws as given by wsURL, or on the request's host name with
// either scheme (behind a TLS-terminating proxy the page is https while
// the request here is not).
func contentSecurityPolicy(r *http.Request, ws string) string {
	connect := "'self'"
	if u, err := url.Parse(ws); err == nil && (u.Scheme == "ws" || u.Scheme == "wss") && u.Host != "" {
		connect += " " + u.Scheme + "://" + u.Host
	} else {
		port := "8083"
		if m := wsPort.FindStringSubmatch(strings.TrimSpace(ws)); m != nil {
			port = m[1]
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
		hp := net.JoinHostPort(strings.Trim(host, "[]"), port)
		connect += " ws://" + hp + " wss://" + hp
	}
	return "default-src 'self'; script-src 'self'; worker-src 'self' blob:; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; " +
		"connect-src " + connect + "; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// wsPort matches what the app takes for a port (and path): "8083",
// ":8083/mqtt" (web/src/config.ts).
var wsPort = regexp.MustCompile(`^:?(\d{1,5})(/.*)?$`)

func (h *handler) asset(name string) *asset {
	if v, ok := h.cache.Load(name); ok {
		return v.(*asset)
	}
	b, err := fs.ReadFile(h.files, name)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(b)
	a := &asset{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: mime.TypeByExtension(path.Ext(name))}
	if a.ctype == "" {
		a.ctype = http.DetectContentType(b)
	}
	if compressible(a.ctype) && len(b) > 1024 {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		if buf.Len() < len(b) {
			a.gz = buf.Bytes()
		}
	}
	v, _ := h.cache.LoadOrStore(name, a)
	return v.(*asset)
}

func compressible(ctype string) bool {
	for _, p := range []string{"text/", "application/javascript", "text/javascript", "application/json", "image/svg+xml", "application/manifest+json"} {
		if strings.HasPrefix(ctype, p) {
			return true
		}
	}
	return false
}

func (h *handler) serveAsset(w http.ResponseWriter, r *http.Request, a *asset) {
	w.Header().Set("Content-Type", a.ctype)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	body := a.body
	etag := a.etag
	if a.gz != nil {
		w.Header().Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			w.Header().Set("Content-Encoding", "gzip")
			body = a.gz
			etag = strings.TrimSuffix(etag, `"`) + `-gz"`
		}
	}
	w.Header().Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.TrimSpace(q) != "q=0" {
			return true
		}
	}
	return false
}

func notBuilt(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Parley</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1f2937}
code{background:#f3f4f6;padding:.1rem .3rem;border-radius:4px}</style></head>
<body><h1>The web app is not built</h1>
<p>This parley binary was built before the web app. Build the app with <code>make web</code>
(it needs Node.js and npm), then build and start parley again — <code>make run</code> does both.</p>
<p>The MQTT, WebSocket and HTTP APIs work without it.</p></body></html>
`))
}
