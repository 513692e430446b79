package broker_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/broker"
	"github.com/parleychat/parley/broker/brokertest"
)

// Brute-force protection, end to end: password checks throttled per user
// name and per client address on every listener (counted, never timed: the
// lockout is an hour, so the attempt after the last free failure is refused
// however slow the machine), lockout signals in /metrics, the
// administrators' own listener, no tokens of existing accounts from the
// bulk endpoint, and the client-id rule for administrators.

// throttled returns Options whose password checks lock a user name after
// userFailures failures and an address after addrFailures (-1: never), for
// an hour.
func throttled(o brokertest.Options, userFailures, addrFailures int) brokertest.Options {
	o.Accounts = func(c *auth.Config) {
		c.Throttle = auth.ThrottleConfig{UserFailures: userFailures, AddrFailures: addrFailures, Backoff: time.Hour}
	}
	return o
}

// httpAsk sends a JSON request with optional Basic credentials and returns
// the status, the Retry-After header and the decoded JSON body.
func httpAsk(t *testing.T, method, url string, basic []string, body any) (int, string, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if basic != nil {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header.Get("Retry-After"), out
}

// TestLoginThrottled: 5 wrong passwords at POST /v1/tokens, then the right
// one is refused with 429 and Retry-After, unchecked; another user is not
// affected; /metrics counts the failures, the refusal and the locked name.
func TestLoginThrottled(t *testing.T) { forEachStore(t, testLoginThrottled) }

func testLoginThrottled(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, throttled(o, 5, -1))
	n.User("alice")
	n.User("bob")
	login := func(id, pw string) (int, string) {
		code, retry, _ := httpAsk(t, "POST", n.HTTP+"/v1/tokens", nil, map[string]string{"id": id, "password": pw})
		return code, retry
	}
	for i := range 5 {
		if code, _ := login("alice", "wrong-password"); code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: status %d, want 401", i+1, code)
		}
	}
	code, retry := login("alice", "password-alice")
	if code != http.StatusTooManyRequests {
		t.Fatalf("6th attempt with the right password: status %d, want 429", code)
	}
	if s, err := strconv.Atoi(retry); err != nil || s < 3000 || s > 3600 {
		t.Errorf("Retry-After %q, want the seconds left of the hour's lockout", retry)
	}
	if code, _ := login("bob", "password-bob"); code != http.StatusOK {
		t.Fatalf("bob's login: status %d, want 200", code)
	}
	metrics := n.HTTP + "/metrics"
	for series, want := range map[string]float64{
		`parley_auth_failures_total{listener="http",outcome="bad_password"}`: 5,
		`parley_auth_throttled_total{listener="http"}`:                       1,
		`parley_auth_locked{key="user"}`:                                     1,
		`parley_auth_locked{key="address"}`:                                  0,
	} {
		if got := metricValue(t, metrics, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// TestAdminMQTTThrottled: an administrator's password guessed over MQTT
// (TCP and WebSocket count together) is locked out after 5 failures: the
// right password is then refused with CONNACK 0x9F (MQTT 3.1.1: 3), and
// over HTTP too. Users' tokens are not throttled.
func TestAdminMQTTThrottled(t *testing.T) { forEachStore(t, testAdminMQTTThrottled) }

func testAdminMQTTThrottled(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, throttled(o, 5, -1))
	at := n.User("alice")
	for i := range 5 {
		opts := brokertest.V5Options{}
		if i%2 == 1 {
			d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: brokertest.Patience(5 * time.Second)}
			ws, resp, err := d.Dial("ws://"+n.WS+"/mqtt", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			opts.Conn = brokertest.WSConn(ws)
		}
		cl, err := n.DialV5(brokertest.Admin, fmt.Sprintf("guess-%d", i), "admin/guess", opts)
		if err == nil || cl.Connack == nil || cl.Connack.ReasonCode != 0x86 {
			t.Fatalf("guess %d: %v, CONNACK %+v; want 0x86", i+1, err, cl.Connack)
		}
	}
	cl, err := n.DialV5(brokertest.Admin, brokertest.AdminPassword, "admin/right", brokertest.V5Options{})
	if err == nil || cl.Connack == nil || cl.Connack.ReasonCode != 0x9F {
		t.Fatalf("right password after 5 guesses: %v, CONNACK %+v; want 0x9F", err, cl.Connack)
	}
	// A client that asks for problem information (paho above does not) is
	// told when to retry.
	raw := dialRaw(t, n.MQTT)
	if _, err := raw.Write(adminConnect(t, 5, "admin/raw", false)); err != nil {
		t.Fatal(err)
	}
	if ack := readConnack(t, raw, bufio.NewReader(raw), 5); ack.ReasonCode != 0x9F || !strings.Contains(ack.Properties.ReasonString, "retry in") {
		t.Errorf("CONNACK %#x %q, want 0x9F saying when to retry", ack.ReasonCode, ack.Properties.ReasonString)
	}
	if _, err := n.DialV3(brokertest.Admin, brokertest.AdminPassword, "admin/v3", true); err == nil ||
		!strings.Contains(strings.ToLower(err.Error()), "server unavailable") {
		t.Fatalf("MQTT 3.1.1, right password: %v; want return code 3 (server unavailable)", err)
	}
	if code, retry, _ := httpAsk(t, "GET", n.HTTP+"/v1/cluster", []string{brokertest.Admin, brokertest.AdminPassword}, nil); code != 429 || retry == "" {
		t.Fatalf("GET /v1/cluster as the locked-out administrator: %d (Retry-After %q), want 429", code, retry)
	}
	// Tokens are not throttled: wrong ones are counted, and the user's own
	// still works.
	for i := range 10 {
		if _, err := n.DialV5("alice", fmt.Sprintf("pt_wrong-token-%02d", i), "alice", brokertest.V5Options{}); err == nil {
			t.Fatal("a wrong token accepted")
		}
	}
	n.MustV5("alice", at, "alice", brokertest.V5Options{})
	metrics := n.HTTP + "/metrics"
	for series, want := range map[string]float64{
		`parley_auth_failures_total{listener="mqtt",outcome="bad_password"}`: 3,
		`parley_auth_failures_total{listener="ws",outcome="bad_password"}`:   2,
		`parley_auth_failures_total{listener="mqtt",outcome="bad_token"}`:    10,
		`parley_auth_throttled_total{listener="mqtt"}`:                       3,
		`parley_auth_throttled_total{listener="http"}`:                       1,
	} {
		if got := metricValue(t, metrics, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// TestAdminBasicThrottled: wrong HTTP Basic passwords of an administrator
// lock the name out: the right password then gets 429, on every admin
// route and on MQTT.
func TestAdminBasicThrottled(t *testing.T) {
	n := brokertest.Start(t, throttled(brokertest.Options{}, 5, -1))
	for i := range 5 {
		if code, _, _ := httpAsk(t, "GET", n.HTTP+"/v1/cluster", []string{brokertest.Admin, fmt.Sprintf("guess-%d", i)}, nil); code != 401 {
			t.Fatalf("guess %d: status %d, want 401", i+1, code)
		}
	}
	right := []string{brokertest.Admin, brokertest.AdminPassword}
	if code, retry, _ := httpAsk(t, "GET", n.HTTP+"/v1/cluster", right, nil); code != 429 || retry == "" {
		t.Fatalf("right password after 5 guesses: %d (Retry-After %q), want 429", code, retry)
	}
	body := map[string]any{"users": []map[string]string{{"id": "carol", "password": "password-carol"}}}
	if code, _, _ := httpAsk(t, "POST", n.HTTP+"/v1/admin/users", right, body); code != 429 {
		t.Fatalf("POST /v1/admin/users: %d, want 429", code)
	}
	if cl, err := n.DialV5(brokertest.Admin, brokertest.AdminPassword, "admin/x", brokertest.V5Options{}); err == nil || cl.Connack.ReasonCode != 0x9F {
		t.Fatalf("MQTT after HTTP guesses: %v; want CONNACK 0x9F", err)
	}
	if got := metricValue(t, n.HTTP+"/metrics", `parley_auth_failures_total{listener="http",outcome="bad_password"}`); got != 5 {
		t.Errorf("failures over HTTP = %v, want 5", got)
	}
}

// TestAddressThrottled: one address guessing many names is locked out for
// every name's password, administrators' included.
func TestAddressThrottled(t *testing.T) {
	n := brokertest.Start(t, throttled(brokertest.Options{}, -1, 4))
	n.User("alice")
	for i := range 4 {
		code, _, _ := httpAsk(t, "POST", n.HTTP+"/v1/tokens", nil, map[string]string{"id": fmt.Sprintf("user%d", i), "password": "password1"})
		if code != 401 {
			t.Fatalf("guess %d: %d, want 401", i+1, code)
		}
	}
	if code, _, _ := httpAsk(t, "POST", n.HTTP+"/v1/tokens", nil, map[string]string{"id": "alice", "password": "password-alice"}); code != 429 {
		t.Fatalf("alice from the guessing address: %d, want 429", code)
	}
	if cl, err := n.DialV5(brokertest.Admin, brokertest.AdminPassword, "admin/x", brokertest.V5Options{}); err == nil || cl.Connack.ReasonCode != 0x9F {
		t.Fatalf("the administrator from the guessing address: %v; want CONNACK 0x9F", err)
	}
	if got := metricValue(t, n.HTTP+"/metrics", `parley_auth_locked{key="address"}`); got != 1 {
		t.Errorf("locked addresses = %v, want 1", got)
	}
}

// TestBulkUsersExisting: the bulk endpoint creates new users with a token,
// and reports existing accounts (users and administrators) as "exists"
// without a token, whatever password is sent.
func TestBulkUsersExisting(t *testing.T) { forEachStore(t, testBulkUsersExisting) }

func testBulkUsersExisting(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at := n.User("alice")
	body := map[string]any{"users": []map[string]string{
		{"id": "alice", "password": "anything-at-all"},
		{"id": "alice", "password": "password-alice"},
		{"id": brokertest.Admin, "password": "anything-at-all"},
		{"id": "bob", "password": "password-bob"},
	}}
	code, _, out := httpAsk(t, "POST", n.HTTP+"/v1/admin/users", []string{brokertest.Admin, brokertest.AdminPassword}, body)
	if code != 200 {
		t.Fatalf("POST /v1/admin/users: %d %v", code, out)
	}
	users, _ := out["users"].([]any)
	if len(users) != 4 {
		t.Fatalf("answer %v, want 4 users", out)
	}
	for i, want := range []string{"exists", "exists", "exists", ""} {
		u := users[i].(map[string]any)
		tok, _ := u["token"].(string)
		errText, _ := u["error"].(string)
		if errText != want || (want != "" && tok != "") || (want == "" && tok == "") {
			t.Errorf("user %d %v: error %q, token %q; want error %q and a token only for a new user", i, u["id"], errText, tok, want)
		}
	}
	bob := users[3].(map[string]any)["token"].(string)
	n.MustV5("bob", bob, "bob", brokertest.V5Options{})
	n.MustV5("alice", at, "alice", brokertest.V5Options{}) // alice's own token is untouched
}

// TestAdminListener: with http.admin_addr, administrators' routes and
// Basic auth are served there only; the public address answers 404 to
// them (and 403 to an administrator registering a user when registration
// is closed), with the right password.
func TestAdminListener(t *testing.T) {
	o := brokertest.Options{Config: broker.Config{AdminAddr: "127.0.0.1:0"},
		Accounts: func(c *auth.Config) { c.OpenRegistration = false }}
	n := brokertest.Start(t, o)
	admin := "http://" + n.Srv.AdminAddr()
	if admin == "http://" {
		t.Fatal("no administrators' listener")
	}
	right := []string{brokertest.Admin, brokertest.AdminPassword}
	newUser := func(id string) map[string]string { return map[string]string{"id": id, "password": "password-" + id} }
	bulk := map[string]any{"users": []map[string]string{newUser("bulk1")}}
	for name, c := range map[string]struct {
		method, path string
		body         any
		public, priv int
	}{
		"GET /v1/cluster":         {"GET", "/v1/cluster", nil, 404, 200},
		"POST /v1/admin/users":    {"POST", "/v1/admin/users", bulk, 404, 200},
		"POST /v1/users (closed)": {"POST", "/v1/users", newUser("carol"), 403, 201},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _, out := httpAsk(t, c.method, n.HTTP+c.path, right, c.body); code != c.public {
				t.Errorf("on http.addr: %d %v, want %d", code, out, c.public)
			}
			if code, _, out := httpAsk(t, c.method, admin+c.path, right, c.body); code != c.priv {
				t.Errorf("on http.admin_addr: %d %v, want %d", code, out, c.priv)
			}
		})
	}
	// Users' routes work on both; a wrong password on the administrators'
	// listener is audited as listener "admin".
	if code, _, _ := httpAsk(t, "POST", n.HTTP+"/v1/tokens", nil, map[string]string{"id": "carol", "password": "password-carol"}); code != 200 {
		t.Errorf("login on http.addr: %d", code)
	}
	if code, _, _ := httpAsk(t, "GET", admin+"/v1/cluster", []string{brokertest.Admin, "wrong-password"}, nil); code != 401 {
		t.Errorf("wrong password on http.admin_addr: %d, want 401", code)
	}
	if got := metricValue(t, n.HTTP+"/metrics", `parley_auth_failures_total{listener="admin",outcome="bad_password"}`); got != 1 {
		t.Errorf("failures on the administrators' listener = %v, want 1", got)
	}
	// Without admin_addr, http.addr serves administrators.
	plain := brokertest.Start(t, brokertest.Options{})
	if code, _, _ := httpAsk(t, "GET", plain.HTTP+"/v1/cluster", right, nil); code != 200 {
		t.Errorf("GET /v1/cluster without admin_addr: %d, want 200", code)
	}
	if plain.Srv.AdminAddr() != "" {
		t.Errorf("AdminAddr() = %q without admin_addr", plain.Srv.AdminAddr())
	}
}

// TestAdminPasswordHash: an administrator configured with a bcrypt hash
// signs in over MQTT and HTTP with the password, not with the hash.
func TestAdminPasswordHash(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("a-long-admin-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	n := brokertest.Start(t, brokertest.Options{Accounts: func(c *auth.Config) {
		c.Admins = map[string]string{"root": string(hash)}
	}})
	n.MustV5("root", "a-long-admin-password", "root/console", brokertest.V5Options{})
	if cl, err := n.DialV5("root", string(hash), "root/hash", brokertest.V5Options{}); err == nil || cl.Connack.ReasonCode != 0x86 {
		t.Fatalf("the hash as the password: %v; want CONNACK 0x86", err)
	}
	if code, _, _ := httpAsk(t, "GET", n.HTTP+"/v1/cluster", []string{"root", "a-long-admin-password"}, nil); code != 200 {
		t.Errorf("GET /v1/cluster with the password: %d, want 200", code)
	}
	if code, _, _ := httpAsk(t, "GET", n.HTTP+"/v1/cluster", []string{"root", string(hash)}, nil); code != 401 {
		t.Errorf("GET /v1/cluster with the hash: %d, want 401", code)
	}
}

// TestAdminClientIDRule: an administrator may use its own client ids and
// ids of no user, but a user's device id only when impersonating (MQTT 5
// user property impersonate=true): otherwise CONNACK 0x85 (3.1.1: 2), and
// the user's session is not taken over.
func TestAdminClientIDRule(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	at := n.User("alice")
	n.MustV5("alice", at, "alice/phone", brokertest.V5Options{})
	for name, c := range map[string]struct {
		clientID    string
		impersonate bool
		version     byte
		want        byte
	}{
		"own id":                         {"admin", false, 5, 0},
		"own device id":                  {"admin/console", false, 5, 0},
		"no user's id":                   {"console", false, 5, 0},
		"no user's device id":            {"nobody/x", false, 5, 0},
		"a user's device":                {"alice/phone", false, 5, 0x85},
		"a user's bare id":               {"alice", false, 5, 0x85},
		"a user's device, MQTT 3.1.1":    {"alice/tablet", false, 4, 2},
		"a user's device, impersonating": {"alice/laptop", true, 5, 0},
		"impersonate=false":              {"alice/laptop", false, 5, 0x85},
	} {
		t.Run(name, func(t *testing.T) {
			conn := dialRaw(t, n.MQTT)
			if _, err := conn.Write(adminConnect(t, c.version, c.clientID, c.impersonate)); err != nil {
				t.Fatal(err)
			}
			ack := readConnack(t, conn, bufio.NewReader(conn), c.version)
			if ack.ReasonCode != c.want {
				t.Fatalf("CONNACK %#x, want %#x", ack.ReasonCode, c.want)
			}
		})
	}
	if !n.Srv.Connected("alice/phone") {
		t.Fatal("alice's phone lost its connection to a refused administrator")
	}
}

// adminConnect encodes the administrator's CONNECT (MQTT 5, or 3.1.1 for
// version 4) with clientID and, if impersonate, the user property
// impersonate=true.
func adminConnect(t *testing.T, version byte, clientID string, impersonate bool) []byte {
	t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: clientID,
			UsernameFlag: true, Username: []byte(brokertest.Admin), PasswordFlag: true, Password: []byte(brokertest.AdminPassword)}}
	if impersonate {
		pk.Properties.User = []packets.UserProperty{{Key: "impersonate", Val: "true"}}
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
