package broker

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestOriginAllowed(t *testing.T) {
	cases := map[string]struct {
		allowed      []string
		host, origin string
		want         bool
	}{
		"no Origin: not a browser":           {nil, "chat.example:8083", "", true},
		"the app's own host, other port":     {nil, "chat.example:8083", "https://chat.example:8080", true},
		"the app's own host, no port":        {nil, "chat.example", "https://CHAT.example", true},
		"IPv6 host":                          {nil, "[::1]:8083", "http://[::1]:8080", true},
		"another site":                       {nil, "chat.example:8083", "https://evil.example", false},
		"a subdomain is another site":        {nil, "chat.example:8083", "https://a.chat.example", false},
		"opaque origin (sandbox, file)":      {nil, "chat.example:8083", "null", false},
		"listed":                             {[]string{"https://app.example"}, "ws.example", "https://app.example", true},
		"a list replaces the host rule":      {[]string{"https://app.example"}, "ws.example", "https://ws.example", false},
		"listed origins are matched exactly": {[]string{"https://app.example"}, "ws.example", "https://app.example:444", false},
		"star allows any":                    {[]string{"*"}, "ws.example", "https://evil.example", true},
		"no Origin with a list":              {[]string{"https://app.example"}, "ws.example", "", true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/mqtt", nil)
			r.Host = c.host
			if c.origin != "" {
				r.Header.Set("Origin", c.origin)
			}
			if got := originAllowed(c.allowed, r); got != c.want {
				t.Fatalf("originAllowed = %v, want %v", got, c.want)
			}
		})
	}
}

func TestHSTSOnlyOverTLS(t *testing.T) {
	h := withHSTS(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	for _, overTLS := range []bool{false, true} {
		r := httptest.NewRequest("GET", "/", nil)
		if overTLS {
			r.TLS = &tls.ConnectionState{}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if got := rec.Result().Header.Get("Strict-Transport-Security"); (got != "") != overTLS {
			t.Errorf("over TLS %v: Strict-Transport-Security %q", overTLS, got)
		}
	}
}
