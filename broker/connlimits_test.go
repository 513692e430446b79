package broker_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/broker"
	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
)

// Connection admission and HTTP hardening, end to end on real sockets: a
// client that never sends CONNECT, too many connections, keep-alive 0,
// slow HTTP clients, what /readyz and errors tell a client.

// dialRaw opens a TCP connection that the test closes at its end.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed reads c until the server closes it (EOF or reset) and fails
// the test if that takes longer than d (patience-scaled): reading times out.
func waitClosed(t *testing.T, c net.Conn, d time.Duration, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(brokertest.Patience(d)))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: still open after %v", what, brokertest.Patience(d))
	}
}

// connectPacket encodes a CONNECT of user with token as its password.
func connectPacket(t *testing.T, version byte, user, token string, keepalive uint16) []byte {
	t.Helper()
	name := "MQTT"
	if version == 3 {
		name = "MQIsdp"
	}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte(name), Clean: true, Keepalive: keepalive, ClientIdentifier: user,
			UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(token)}}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readConnack reads one CONNACK from r.
func readConnack(t *testing.T, c net.Conn, r *bufio.Reader, version byte) packets.Packet {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(brokertest.Patience(5 * time.Second)))
	defer c.SetReadDeadline(time.Time{})
	b, err := r.ReadByte()
	if err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	pk := packets.Packet{ProtocolVersion: version}
	if err := pk.FixedHeader.Decode(b); err != nil || pk.FixedHeader.Type != packets.Connack {
		t.Fatalf("first packet %#x, want a CONNACK (%v)", b, err)
	}
	n, _, err := packets.DecodeLength(r)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	if err := pk.ConnackDecode(body); err != nil {
		t.Fatal(err)
	}
	return pk
}

// TestSilentConnectionsClosed: a connection that does not complete CONNECT
// within the connect timeout is closed, over TCP and WebSocket, while a
// connected client stays.
func TestSilentConnectionsClosed(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Config: broker.Config{ConnectTimeout: 300 * time.Millisecond}})
	at := n.User("alice")
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	cases := map[string]func(t *testing.T){
		"tcp, nothing sent": func(t *testing.T) {
			waitClosed(t, dialRaw(t, n.MQTT), 5*time.Second, "silent TCP connection")
		},
		"tcp, CONNECT cut short": func(t *testing.T) {
			c := dialRaw(t, n.MQTT)
			full := connectPacket(t, 5, "alice", at, 30)
			if _, err := c.Write(full[:len(full)/2]); err != nil {
				t.Fatal(err)
			}
			waitClosed(t, c, 5*time.Second, "half a CONNECT")
		},
		"websocket, nothing sent after the upgrade": func(t *testing.T) {
			d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: brokertest.Patience(5 * time.Second)}
			ws, resp, err := d.Dial("ws://"+n.WS+"/mqtt", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			defer ws.Close()
			ws.SetReadDeadline(time.Now().Add(brokertest.Patience(5 * time.Second)))
			_, _, err = ws.ReadMessage()
			var ne net.Error
			if err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("silent WebSocket still open: %v", err)
			}
		},
		"websocket, upgrade request cut short": func(t *testing.T) {
			c := dialRaw(t, n.WS)
			if _, err := io.WriteString(c, "GET /mqtt HTTP/1.1\r\nHost: x\r\n"); err != nil {
				t.Fatal(err)
			}
			waitClosed(t, c, 5*time.Second, "half an upgrade request")
		},
	}
	for name, test := range cases {
		t.Run(name, test)
	}
	// Every silent connection was closed after the connect timeout; the
	// connected client, older than all of them, was not.
	if rc := alice.Pub(t, "u/alice", "still here"); rc != 0 {
		t.Fatalf("connected client's PUBACK %#x after the connect timeout, want 0", rc)
	}
}

// TestConnectionLimits: the connection past a limit is closed at accept,
// counted in /metrics, and a slot given back admits a real client.
func TestConnectionLimits(t *testing.T) {
	cases := map[string]struct {
		cfg    broker.Config
		reason string
		frees  bool // closing a held connection admits a new one
	}{
		"listener":          {broker.Config{MaxConnections: 3}, "max_connections", true},
		"address":           {broker.Config{MaxConnectionsPerIP: 3}, "per_ip", true},
		"rate from address": {broker.Config{ConnectRatePerIP: 0.001, ConnectBurstPerIP: 3}, "rate", false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			c.cfg.ConnectTimeout = time.Minute // held connections stay open
			n := brokertest.Start(t, brokertest.Options{Config: c.cfg})
			tok := n.User("alice") // before the limits bite: sign-up is HTTP
			held := make([]net.Conn, 3)
			for i := range held {
				held[i] = dialRaw(t, n.MQTT)
			}
			waitClosed(t, dialRaw(t, n.MQTT), 5*time.Second, "connection past the limit")
			if c.reason == "per_ip" {
				// The address's count covers the WebSocket port too.
				d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: brokertest.Patience(5 * time.Second)}
				if ws, _, err := d.Dial("ws://"+n.WS+"/mqtt", nil); err == nil {
					ws.Close()
					t.Fatal("WebSocket past the address's limit was upgraded")
				}
			}
			metric := `parley_connections_refused_total{listener="mqtt",reason="` + c.reason + `"}`
			if v := metricValue(t, n.HTTP+"/metrics", metric); v < 1 {
				t.Fatalf("%s = %v, want at least 1", metric, v)
			}
			if !c.frees {
				return
			}
			held[0].Close()
			// Refused until the server has noticed the close.
			testwait.Until(t, 5*time.Second, "a connection admitted after one closed", func() bool {
				cl, err := n.DialV5("alice", tok, "alice", brokertest.V5Options{})
				if err == nil {
					cl.Close()
				}
				return err == nil
			})
		})
	}
}

// metricValue returns the value of the sample named exactly series
// (name{labels}) at url, or -1 when there is none.
func metricValue(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", series, v, err)
			}
			return f
		}
	}
	return -1
}

// TestKeepaliveBounded: keep-alive 0 (none) or above mqtt.max_keepalive is
// replaced by the maximum: MQTT 5 is told in CONNACK, MQTT 3.1.1 is
// disconnected after 1.5 × the maximum of silence.
func TestKeepaliveBounded(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Config: broker.Config{MaxKeepalive: 2 * time.Second}})
	tok := n.User("alice")
	for name, c := range map[string]struct {
		asked uint16
		want  uint16 // 0: no Server Keep Alive
	}{"none": {0, 2}, "above the maximum": {600, 2}, "within": {1, 0}} {
		t.Run("MQTT 5, "+name, func(t *testing.T) {
			conn := dialRaw(t, n.MQTT)
			if _, err := conn.Write(connectPacket(t, 5, "alice", tok, c.asked)); err != nil {
				t.Fatal(err)
			}
			ack := readConnack(t, conn, bufio.NewReader(conn), 5)
			if ack.ReasonCode != 0 {
				t.Fatalf("CONNACK %#x", ack.ReasonCode)
			}
			got := uint16(0)
			if ack.Properties.ServerKeepAliveFlag {
				got = ack.Properties.ServerKeepAlive
			}
			if got != c.want {
				t.Fatalf("Server Keep Alive %d (sent: %v), want %d", got, ack.Properties.ServerKeepAliveFlag, c.want)
			}
		})
	}
	t.Run("MQTT 3.1.1, none", func(t *testing.T) {
		conn := dialRaw(t, n.MQTT)
		r := bufio.NewReader(conn)
		if _, err := conn.Write(connectPacket(t, 4, "alice", tok, 0)); err != nil {
			t.Fatal(err)
		}
		if ack := readConnack(t, conn, r, 4); ack.ReasonCode != 0 {
			t.Fatalf("CONNACK %#x", ack.ReasonCode)
		}
		waitClosed(t, conn, 10*time.Second, "3.1.1 client with keep-alive 0, silent")
	})
}

// TestHTTPTimeouts: a request whose body or headers stall, and an idle
// keep-alive connection, are cut; a WebSocket session outlives the read
// timeout; a body past the limit answers 413.
func TestHTTPTimeouts(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Config: broker.Config{HTTPReadTimeout: 300 * time.Millisecond,
		HTTPReadHeaderTimeout: 300 * time.Millisecond, HTTPIdleTimeout: 300 * time.Millisecond}})
	tok := n.User("alice")
	ws := n.MustWS(t, "alice", tok, "alice/web")
	u, _ := url.Parse(n.HTTP)
	cases := map[string]struct {
		addr, send string
		reply      bool // read a full response first, then wait for the close
	}{
		"body stalls": {u.Host, "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
			"Content-Length: 100\r\n\r\n{\"id\":", false},
		"headers stall":                 {u.Host, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", false},
		"idle keep-alive":               {u.Host, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", true},
		"websocket port, headers stall": {n.WS, "GET /mqtt HTTP/1.1\r\nHost: x\r\n", false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			conn := dialRaw(t, c.addr)
			if _, err := io.WriteString(conn, c.send); err != nil {
				t.Fatal(err)
			}
			if c.reply {
				r := bufio.NewReader(conn)
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			waitClosed(t, conn, 5*time.Second, name)
		})
	}
	// The MQTT-over-WebSocket session, older than the cut requests, is
	// alive past the HTTP read timeout.
	if rc := ws.Pub(t, "u/alice", "still here"); rc != 0 {
		t.Fatalf("WebSocket session's PUBACK %#x after the HTTP read timeout", rc)
	}

	big := `{"id":"` + strings.Repeat("a", 2<<20) + `","password":"x"}`
	resp, err := http.Post(n.HTTP+"/v1/tokens", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 MiB body: %d %s, want 413", resp.StatusCode, body)
	}
}

// TestErrorsHideInternals: /readyz with the store cut off says which check
// fails and nothing of the store's error; an API error shows the error's
// own text, not what wrapped it.
func TestErrorsHideInternals(t *testing.T) {
	base := brokertestDB(t)
	u, _ := url.Parse(base)
	proxy := brokertest.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	n := brokertest.Start(t, brokertest.Options{DBURL: u.String()})
	n.User("alice")
	var e struct{ Error string }
	if code := n.HTTPDo("POST", "/v1/users", "", map[string]string{"id": "alice", "password": "password-alice"}, &e); code != 409 || e.Error != "user id is taken" {
		t.Fatalf("taken id: %d %q, want 409 %q", code, e.Error, "user id is taken")
	}

	proxy.Cut()
	resp, err := http.Get(n.HTTP + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("/readyz with the store cut off: %d %s", resp.StatusCode, body)
	}
	_, port, _ := net.SplitHostPort(proxy.Addr())
	for _, secret := range []string{u.String(), proxy.Addr(), port, u.User.Username(), strings.TrimPrefix(u.Path, "/"), "postgres", "dial", "connect", "SQL"} {
		if secret != "" && strings.Contains(string(body), secret) {
			t.Errorf("/readyz body %s reveals %q", body, secret)
		}
	}
	if !strings.Contains(string(body), `"failing":"store"`) {
		t.Errorf("/readyz body %s does not name the failing check", body)
	}
}

// TestMetricsOnPrivateAddress: with http.metrics_addr set, /metrics and
// /debug/pprof/ are served there and no longer on http.addr.
func TestMetricsOnPrivateAddress(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Config: broker.Config{MetricsAddr: "127.0.0.1:0", Pprof: true}})
	private := "http://" + n.Srv.MetricsAddr()
	if v := metricValue(t, private+"/metrics", `parley_accept_errors_total{listener="mqtt"}`); v != 0 {
		t.Fatalf("parley_accept_errors_total on the metrics address: %v, want 0", v)
	}
	for path, want := range map[string][2]int{"/metrics": {200, 404}, "/debug/pprof/": {200, 404}, "/healthz": {404, 200}} {
		for i, base := range []string{private, n.HTTP} {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want[i] {
				t.Errorf("GET %s%s: %d, want %d", base, path, resp.StatusCode, want[i])
			}
		}
	}
}
