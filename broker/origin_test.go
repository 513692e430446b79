package broker_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/broker/brokertest"
)

// The WebSocket listener refuses a page of another site by default, before
// the upgrade, and lets the web app's own pages and non-browser clients in.
func TestWebSocketOriginPolicy(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	dial := func(origin string) (int, error) {
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: brokertest.Patience(5 * time.Second)}
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		ws, resp, err := d.Dial("ws://"+n.WS+"/mqtt", h)
		if ws != nil {
			ws.Close()
		}
		if resp == nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	cases := map[string]struct {
		origin string
		want   int
	}{
		"the web app's page": {"http://127.0.0.1:8080", http.StatusSwitchingProtocols},
		"no Origin":          {"", http.StatusSwitchingProtocols},
		"another site":       {"https://evil.example", http.StatusForbidden},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			status, err := dial(c.origin)
			if status != c.want {
				t.Fatalf("handshake status %d (%v), want %d", status, err, c.want)
			}
		})
	}
}
