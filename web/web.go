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
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed all:dist
var dist embed.FS

// wsMeta is the tag of index.html whose content the handler fills in with
// the WebSocket endpoint.
const wsMeta = `<meta name="parley-ws" content="">`

// Handler serves the embedded app. wsURL tells the app where MQTT over
// WebSocket is for a request: a port ("8083"), a port and path
// (":8083/mqtt"), or a full URL ("wss://chat.example.com/mqtt"). The app
// connects to ws(s)://{its own host name}:{port}{path} for the first two.
func Handler(wsURL func(r *http.Request) string) http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded: it is always there
	}
	return newHandler(sub, wsURL)
}

// Built reports whether the binary embeds a built app.
func Built() bool {
	_, err := fs.Stat(dist, "dist/index.html")
	return err == nil
}

type handler struct {
	files fs.FS
	wsURL func(*http.Request) string
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

func newHandler(files fs.FS, wsURL func(*http.Request) string) *handler {
	h := &handler{files: files, wsURL: wsURL}
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
	body := bytes.Replace(h.index, []byte(wsMeta),
		[]byte(`<meta name="parley-ws" content="`+html.EscapeString(ws)+`">`), 1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Always revalidated: it names the current build's assets.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(body))
}

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
