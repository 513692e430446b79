package web

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func built() fstest.MapFS {
	return fstest.MapFS{
		"index.html":             {Data: []byte(`<!doctype html><html><head><meta name="parley-ws" content=""><script src="/assets/index-abc123.js"></script></head><body></body></html>`)},
		"assets/index-abc123.js": {Data: []byte("console.log('" + strings.Repeat("parley ", 400) + "')")},
		"favicon.svg":            {Data: []byte(`<svg xmlns="http://www.w3.org/2000/svg"></svg>`)},
		".gitkeep":               {Data: nil},
	}
}

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandler(t *testing.T) {
	h := newHandler(built(), func(r *http.Request) string { return `:8083/mqtt"><script>` }, Options{})
	tests := map[string]struct {
		method, path string
		status       int
		contains     string
		cache        string
	}{
		"root is the app":             {"GET", "/", 200, `<meta name="parley-ws" content=":8083/mqtt&#34;&gt;&lt;script&gt;">`, "no-cache"},
		"index.html":                  {"GET", "/index.html", 200, `content=":8083/mqtt`, "no-cache"},
		"a page of the app":           {"GET", "/chat/u/bob", 200, `name="parley-ws"`, "no-cache"},
		"a page with a dot":           {"GET", "/c/u/bob.smith", 200, `name="parley-ws"`, "no-cache"},
		"hashed asset":                {"GET", "/assets/index-abc123.js", 200, "console.log", "public, max-age=31536000, immutable"},
		"other file":                  {"GET", "/favicon.svg", 200, "<svg", "public, max-age=3600"},
		"missing asset":               {"GET", "/assets/index-old.js", 404, "", ""},
		"missing file with extension": {"GET", "/robots.txt", 404, "", ""},
		"HEAD":                        {"HEAD", "/", 200, "", "no-cache"},
		"POST is not allowed":         {"POST", "/", 405, "", ""},
		"dot dot stays inside":        {"GET", "/../../etc/passwd", 200, `name="parley-ws"`, "no-cache"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			res := get(t, h, tc.method, tc.path, nil)
			if res.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", res.StatusCode, tc.status)
			}
			if b := body(t, res); !strings.Contains(b, tc.contains) {
				t.Errorf("body = %q, want it to contain %q", b, tc.contains)
			}
			if got := res.Header.Get("Cache-Control"); got != tc.cache && tc.cache != "" {
				t.Errorf("Cache-Control = %q, want %q", got, tc.cache)
			}
		})
	}
}

func TestHandlerGzip(t *testing.T) {
	h := newHandler(built(), nil, Options{})
	res := get(t, h, "GET", "/assets/index-abc123.js", map[string]string{"Accept-Encoding": "br, gzip"})
	if res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding = %q, want gzip", res.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(zr)
	if !strings.HasPrefix(string(b), "console.log") {
		t.Errorf("gunzipped body = %.20q", b)
	}
	etag := res.Header.Get("ETag")
	res = get(t, h, "GET", "/assets/index-abc123.js", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": etag})
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation status = %d, want 304", res.StatusCode)
	}
	res = get(t, h, "GET", "/assets/index-abc123.js", nil)
	if res.Header.Get("Content-Encoding") != "" {
		t.Errorf("Content-Encoding without Accept-Encoding = %q", res.Header.Get("Content-Encoding"))
	}
}

func TestHandlerNotBuilt(t *testing.T) {
	h := newHandler(fstest.MapFS{".gitkeep": {}}, nil, Options{})
	for _, p := range []string{"/", "/chat", "/assets/x.js"} {
		res := get(t, h, "GET", p, nil)
		if res.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s: status = %d, want 503", p, res.StatusCode)
		}
		if b := body(t, res); !strings.Contains(b, "make web") {
			t.Errorf("%s: body does not say to run make web: %q", p, b)
		}
	}
}

// TestEmbedded checks the embedded dist: it builds without the app (only
// .gitkeep) and serves whichever it has.
func TestEmbedded(t *testing.T) {
	res := get(t, Handler(func(*http.Request) string { return "8083" }, Options{}), "GET", "/", nil)
	if res.StatusCode != 200 && res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status = %d", res.StatusCode)
	}
}

func TestHandlerSecurityHeaders(t *testing.T) {
	cases := map[string]struct {
		ws, host    string
		wantConnect string
	}{
		"port and path": {":8083/mqtt", "chat.example:8080", "connect-src 'self' ws://chat.example:8083 wss://chat.example:8083;"},
		"port":          {"9001", "10.0.0.7:8080", "connect-src 'self' ws://10.0.0.7:9001 wss://10.0.0.7:9001;"},
		"IPv6 host":     {":8083/mqtt", "[::1]:8080", "connect-src 'self' ws://[::1]:8083 wss://[::1]:8083;"},
		"public URL":    {"wss://chat.example/mqtt", "10.0.0.7:8080", "connect-src 'self' wss://chat.example;"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHandler(built(), func(*http.Request) string { return c.ws }, Options{})
			req := httptest.NewRequest("GET", "/", nil)
			req.Host = c.host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			csp := rec.Result().Header.Get("Content-Security-Policy")
			for _, want := range []string{c.wantConnect, "script-src 'self';", "style-src 'self';", "object-src 'none';",
				"base-uri 'none';", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
				}
			}
			if got := rec.Result().Header.Get("X-Frame-Options"); got != "DENY" {
				t.Errorf("X-Frame-Options = %q, want DENY", got)
			}
			if strings.Contains(rec.Body.String(), "parley-debug") {
				t.Error("the page offers window.parley without Options.Debug")
			}
		})
	}
}

func TestHandlerDebugHandle(t *testing.T) {
	h := newHandler(built(), func(*http.Request) string { return "8083" }, Options{Debug: true})
	if b := body(t, get(t, h, "GET", "/", nil)); !strings.Contains(b, `<meta name="parley-debug" content="1">`) {
		t.Fatalf("page %q lacks the debug meta tag", b)
	}
}
