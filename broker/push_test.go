package broker_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/broker"
	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/push/pushtest"
)

// pushRig is a node with push on, sending to fake APNs and FCM servers.
type pushRig struct {
	n    *brokertest.Node
	apns *pushtest.APNsServer
	fcm  *pushtest.FCMServer
}

// startPush starts fake providers and a node with push on and the given
// grace period; configure, if given, changes the node's configuration.
func startPush(t *testing.T, o brokertest.Options, grace time.Duration, configure ...func(*broker.Config)) *pushRig {
	t.Helper()
	r := &pushRig{apns: pushtest.NewAPNsServer(t), fcm: pushtest.NewFCMServer(t)}
	o.Push = newRouter(t, r.apns, r.fcm)
	o.Config = brokertestConfig()
	o.Config.Push = push.ServiceConfig{Grace: grace, Poll: 20 * time.Millisecond}
	for _, f := range configure {
		f(&o.Config)
	}
	r.n = brokertest.Start(t, o)
	return r
}

func newRouter(t testing.TB, apnsSrv *pushtest.APNsServer, fcmSrv *pushtest.FCMServer) *push.Router {
	t.Helper()
	a, err := push.NewAPNs(apnsSrv.Config(), brokertest.Logger(t, "apns"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	f, err := push.NewFCM(brokertest.Ctx(t, 5*time.Second), fcmSrv.Config(), brokertest.Logger(t, "fcm"))
	if err != nil {
		t.Fatal(err)
	}
	return push.NewRouter(map[push.Platform]push.Sender{push.PlatformAPNs: a, push.PlatformFCM: f}, nil)
}

// apnsToken returns a well-formed APNs token (64 hex digits) for a name.
func apnsToken(name string) string {
	return fmt.Sprintf("%064x", []byte(name))[:64]
}

func register(t *testing.T, n *brokertest.Node, bearer, platform, token string) {
	t.Helper()
	if code, msg := tryRegister(t, n, bearer, platform, token); code != http.StatusOK {
		t.Fatalf("register %s token: status %d %q", platform, code, msg)
	}
}

// tryRegister registers a push token and returns the status and the error
// message, if any.
func tryRegister(t *testing.T, n *brokertest.Node, bearer, platform, token string) (int, string) {
	t.Helper()
	body := map[string]string{"platform": platform, "token": token, "device": "phone"}
	if platform == "apns" {
		body["environment"] = "sandbox"
	}
	var out struct{ Error string }
	code := n.HTTPDo("POST", "/v1/devices", bearer, body, &out)
	return code, out.Error
}

// pushDevice is a push token as GET /v1/devices lists it.
type pushDevice struct{ Token, Platform, Environment, Device, Session string }

// devices returns the caller's push tokens, least recently updated first.
func devices(t *testing.T, n *brokertest.Node, bearer string) []pushDevice {
	t.Helper()
	var out struct{ Devices []pushDevice }
	if code := n.HTTPDo("GET", "/v1/devices", bearer, nil, &out); code != http.StatusOK {
		t.Fatalf("GET /v1/devices: status %d", code)
	}
	return out.Devices
}

// deviceTokens returns the tokens of ds, in order.
func deviceTokens(ds []pushDevice) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Token
	}
	return out
}

// waitCount waits until count() reaches want, then checks that it stays
// there for settle.
func waitCount(t *testing.T, what string, count func() int, want int, settle time.Duration) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for count() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d notifications, want %d", what, count(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	end := time.Now().Add(settle)
	for time.Now().Before(end) {
		if c := count(); c != want {
			t.Fatalf("%s: %d notifications, want %d", what, c, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPushOffline(t *testing.T) { forEachStore(t, testPushOffline) }

// testPushOffline: a burst to an offline user becomes one notification
// per device with the newest text, the unread badge and the message's data.
func testPushOffline(t *testing.T, o brokertest.Options) {
	r := startPush(t, o, 300*time.Millisecond)
	n := r.n
	at, bt := n.User("alice"), n.User("bob")
	register(t, n, bt, "apns", apnsToken("bob-phone"))
	register(t, n, bt, "fcm", "fcm-token-bob-tablet")
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	for i := 1; i <= 3; i++ {
		if rc := alice.Pub(t, "u/bob", fmt.Sprintf(`{"body":{"text":"hello %d"}}`, i)); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
	}
	waitCount(t, "apns", r.apns.Count, 1, 500*time.Millisecond)
	waitCount(t, "fcm", r.fcm.Count, 1, 0)
	last, err := n.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/bob", 2, 10)
	if err != nil || len(last) != 1 {
		t.Fatalf("read: %v %v", last, err)
	}
	a := r.apns.Requests()[0]
	if a.Title != "User alice" || a.Body != "hello 3" || a.Badge == nil || *a.Badge != 3 || a.ThreadID != "u/alice" ||
		a.Environment != push.EnvSandbox || a.Data["inbox"] != "u/bob" || a.Data["seq"] != "3" ||
		a.Data["id"] != last[0].ID || a.Data["count"] != "3" || a.Priority != "10" {
		t.Fatalf("apns notification = %+v", a)
	}
	f := r.fcm.Requests()[0]
	if f.Title != "User alice" || f.Body != "hello 3" || f.Data["id"] != last[0].ID || f.Priority != "high" {
		t.Fatalf("fcm notification = %+v", f)
	}
	// Typing, a message to oneself: no push.
	alice.Pub(t, "u/bob", `{"type":"typing"}`)
	waitCount(t, "apns after typing", r.apns.Count, 1, 500*time.Millisecond)
	// The queue is empty.
	if c, _, err := n.Store.CountPushJobs(brokertest.Ctx(t, 5*time.Second)); err != nil || c != 0 {
		t.Fatalf("queue: %d jobs, %v", c, err)
	}
}

func TestPushOnline(t *testing.T) { forEachStore(t, testPushOnline) }

// testPushOnline: a user whose device acknowledges the message live gets no
// push; once offline, the next message pushes.
func testPushOnline(t *testing.T, o brokertest.Options) {
	r := startPush(t, o, 300*time.Millisecond)
	n := r.n
	at, bt := n.User("alice"), n.User("bob")
	register(t, n, bt, "apns", apnsToken("bob-phone"))
	bob := n.MustV5("bob", bt, "bob/laptop", brokertest.V5Options{})
	bob.Sub(t, "u/bob", 1)
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Pub(t, "u/bob", `{"body":{"text":"live"}}`)
	bob.In.WaitN(t, 1, protocol.TypeMsg)
	waitCount(t, "online", r.apns.Count, 0, time.Second)
	bob.Close()
	alice.Pub(t, "u/bob", `{"body":{"text":"offline"}}`)
	waitCount(t, "offline", r.apns.Count, 1, 300*time.Millisecond)
}

func TestPushReconnectInGrace(t *testing.T) { forEachStore(t, testPushReconnectInGrace) }

// testPushReconnectInGrace: a user who comes back before the grace period
// ends and receives the message gets no push for it.
func testPushReconnectInGrace(t *testing.T, o brokertest.Options) {
	r := startPush(t, o, 2*time.Second)
	n := r.n
	at, bt := n.User("alice"), n.User("bob")
	register(t, n, bt, "apns", apnsToken("bob-phone"))
	opts := brokertest.V5Options{SessionExpiry: 3600}
	bob := n.MustV5("bob", bt, "bob/phone", opts)
	bob.Sub(t, "u/bob", 1)
	bob.Close()
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Pub(t, "u/bob", `{"body":{"text":"while away"}}`)
	bob = n.MustV5("bob", bt, "bob/phone", opts)
	bob.In.WaitN(t, 1, protocol.TypeMsg)
	waitCount(t, "reconnected", r.apns.Count, 0, 3*time.Second)
}

func TestPushMuteAndPreview(t *testing.T) { forEachStore(t, testPushMuteAndPreview) }

// testPushMuteAndPreview: a muted conversation pushes nothing, others do;
// with previews off the body hides the text.
func testPushMuteAndPreview(t *testing.T, o brokertest.Options) {
	r := startPush(t, o, 200*time.Millisecond)
	n := r.n
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	register(t, n, bt, "apns", apnsToken("bob-phone"))
	if code := n.HTTPDo("PUT", "/v1/me/mutes/u/alice", bt, nil, nil); code != 200 {
		t.Fatalf("mute: %d", code)
	}
	if code := n.HTTPDo("PUT", "/v1/me/mutes/u/carol", bt, map[string]any{"until": time.Now().Add(-time.Minute)}, nil); code != 200 {
		t.Fatalf("mute until: %d", code)
	}
	if code := n.HTTPDo("PUT", "/v1/me/mutes/x/alice", bt, nil, nil); code != 400 {
		t.Fatalf("mute a bad inbox: %d, want 400", code)
	}
	var settings struct {
		Preview bool
		Mutes   []struct{ Inbox string }
	}
	n.HTTPDo("GET", "/v1/me/push", bt, nil, &settings)
	if !settings.Preview || len(settings.Mutes) != 1 || settings.Mutes[0].Inbox != "u/alice" {
		t.Fatalf("settings = %+v", settings)
	}
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	carol := n.MustV5("carol", ct, "carol", brokertest.V5Options{})
	alice.Pub(t, "u/bob", `{"body":{"text":"muted"}}`)
	carol.Pub(t, "u/bob", `{"body":{"text":"mute expired"}}`)
	waitCount(t, "muted", r.apns.Count, 1, 500*time.Millisecond)
	if got := r.apns.Requests()[0]; got.Body != "mute expired" {
		t.Fatalf("pushed %+v", got)
	}
	if code := n.HTTPDo("PUT", "/v1/me/push", bt, map[string]bool{"preview": false}, nil); code != 200 {
		t.Fatalf("preview off: %d", code)
	}
	carol.Pub(t, "u/bob", `{"body":{"text":"secret"}}`)
	waitCount(t, "preview off", r.apns.Count, 2, 0)
	if got := r.apns.Requests()[1]; got.Body != push.HiddenPreview || strings.Contains(string(got.Payload), "secret") {
		t.Fatalf("pushed %+v", got)
	}
	if code := n.HTTPDo("DELETE", "/v1/me/mutes/u/alice", bt, nil, nil); code != 204 {
		t.Fatalf("unmute: %d", code)
	}
	alice.Pub(t, "u/bob", `{"body":{"text":"unmuted"}}`)
	waitCount(t, "unmuted", r.apns.Count, 3, 0)
}

func TestPushInvalidTokens(t *testing.T) { forEachStore(t, testPushInvalidTokens) }

// testPushInvalidTokens: tokens the providers call invalid are deleted; the
// others stay.
func testPushInvalidTokens(t *testing.T, o brokertest.Options) {
	r := startPush(t, o, 200*time.Millisecond)
	n := r.n
	at, bt := n.User("alice"), n.User("bob")
	good, gone := apnsToken("bob-good"), apnsToken("bob-gone")
	register(t, n, bt, "apns", good)
	register(t, n, bt, "apns", gone)
	register(t, n, bt, "fcm", "fcm-uninstalled")
	r.apns.Reply(gone, pushtest.APNsReply{Status: 410, Reason: "Unregistered", Timestamp: time.Now().Add(time.Minute)})
	r.fcm.Reply("fcm-uninstalled", pushtest.FCMReply{Error: pushtest.FCMUnregistered})
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Pub(t, "u/bob", `{"body":{"text":"hi"}}`)
	waitCount(t, "apns", r.apns.Count, 2, 0)
	waitCount(t, "fcm", r.fcm.Count, 1, 0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out struct{ Devices []struct{ Token string } }
		n.HTTPDo("GET", "/v1/devices", bt, nil, &out)
		if len(out.Devices) == 1 && out.Devices[0].Token == good {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices = %+v, want only %s", out.Devices, good)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitCount(t, "tokens removed", func() int { return int(pushMetric(t, n, "parley_push_tokens_removed_total")) }, 2, 0)
}

func TestPushRetry(t *testing.T) { forEachStore(t, testPushRetry) }

// testPushRetry: a 429 (APNs, with Retry-After) and a 500 (FCM) are retried
// until the provider takes the notification.
func testPushRetry(t *testing.T, o brokertest.Options) {
	r := startPush(t, o, 200*time.Millisecond)
	n := r.n
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	tok := apnsToken("bob-phone")
	register(t, n, bt, "apns", tok)
	register(t, n, ct, "fcm", "fcm-carol")
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})

	r.apns.Reply(tok, pushtest.APNsReply{Status: 429, Reason: "TooManyRequests", RetryAfter: time.Second})
	alice.Pub(t, "u/bob", `{"body":{"text":"retry me"}}`)
	waitCount(t, "apns first try", r.apns.Count, 1, 0)
	first := time.Now()
	r.apns.Reply(tok, pushtest.APNsReply{})
	waitCount(t, "apns retried", r.apns.Count, 2, 500*time.Millisecond)
	if d := time.Since(first); d < 900*time.Millisecond {
		t.Errorf("APNs retried after %v, before its Retry-After", d)
	}

	r.fcm.Reply("fcm-carol", pushtest.FCMReply{Error: pushtest.FCMInternal})
	alice.Pub(t, "u/carol", `{"body":{"text":"retry me too"}}`)
	waitCount(t, "fcm first try", r.fcm.Count, 1, 0)
	r.fcm.Reply("fcm-carol", pushtest.FCMReply{})
	// The backoff of a 500 may be shorter than this test's reaction: the
	// send may fail more than once before it succeeds.
	waitCount(t, "sent", func() int { return int(pushMetric(t, n, "parley_push_sent_total")) }, 2, 500*time.Millisecond)
	if c := r.fcm.Count(); c < 2 {
		t.Fatalf("fcm got %d requests", c)
	}
	if got := r.fcm.Requests(); got[len(got)-1].Body != "retry me too" {
		t.Fatalf("pushed %+v", got[len(got)-1])
	}
	if f := pushMetric(t, n, "parley_push_retries_total"); f < 2 {
		t.Fatalf("retries = %v", f)
	}
}

// pushMetric returns the value of a counter of the node (summed over its
// labels).
func pushMetric(t *testing.T, n *brokertest.Node, name string) float64 {
	t.Helper()
	mfs, err := n.Srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			} else if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
	}
	return sum
}

func TestPushRestart(t *testing.T) { forEachStore(t, testPushRestart) }

// testPushRestart: pushes pending when a node stops are sent, once, by the
// node that starts next on the same database.
func testPushRestart(t *testing.T, o brokertest.Options) {
	apnsSrv, fcmSrv := pushtest.NewAPNsServer(t), pushtest.NewFCMServer(t)
	o.Push = newRouter(t, apnsSrv, fcmSrv)
	o.Config = brokertestConfig()
	o.Config.Push = push.ServiceConfig{Grace: 2 * time.Second, Poll: 20 * time.Millisecond}
	n := brokertest.Start(t, o)
	at, bt := n.User("alice"), n.User("bob")
	register(t, n, bt, "apns", apnsToken("bob-phone"))
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Pub(t, "u/bob", `{"body":{"text":"one"}}`)
	alice.Pub(t, "u/bob", `{"body":{"text":"two"}}`)
	n.Stop()
	if c := apnsSrv.Count(); c != 0 {
		t.Fatalf("%d pushes before the grace period ended", c)
	}
	o.DBURL = n.DBURL
	n2 := brokertest.Start(t, o)
	waitCount(t, "after restart", apnsSrv.Count, 1, time.Second)
	if got := apnsSrv.Requests()[0]; got.Body != "two" || got.Data["count"] != "2" {
		t.Fatalf("pushed %+v", got)
	}
	if c, _, err := n2.Store.CountPushJobs(brokertest.Ctx(t, 5*time.Second)); err != nil || c != 0 {
		t.Fatalf("queue: %d jobs, %v", c, err)
	}
}

func TestPushGroup(t *testing.T) { forEachStore(t, testPushGroup) }

// testPushGroup: a group message pushes its offline members only, never the
// sender, titled "sender @ group".
func testPushGroup(t *testing.T, o brokertest.Options) {
	r := startPush(t, o, 300*time.Millisecond)
	n := r.n
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	register(t, n, at, "apns", apnsToken("alice-phone"))
	register(t, n, bt, "apns", apnsToken("bob-phone"))
	register(t, n, ct, "apns", apnsToken("carol-phone"))
	g := createGroup(t, n, at, "Team", "bob", "carol")
	carol := n.MustV5("carol", ct, "carol/laptop", brokertest.V5Options{})
	carol.Sub(t, "g/"+g.ID, 1)
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	if rc := alice.Pub(t, "g/"+g.ID, `{"body":{"text":"standup"}}`); rc != 0 {
		t.Fatalf("PUBACK %#x", rc)
	}
	carol.In.WaitN(t, 1, protocol.TypeMsg)
	waitCount(t, "group", r.apns.Count, 1, time.Second)
	got := r.apns.Requests()[0]
	if got.Token != apnsToken("bob-phone") || got.Title != "User alice @ Team" || got.Body != "standup" ||
		got.ThreadID != "g/"+g.ID || got.Data["inbox"] != "g/"+g.ID {
		t.Fatalf("pushed %+v", got)
	}
}

func TestPushDevicesHTTP(t *testing.T) { forEachStore(t, testPushDevicesHTTP) }

// testPushDevicesHTTP: registering, listing, moving and deleting tokens.
func testPushDevicesHTTP(t *testing.T, o brokertest.Options) {
	r := startPush(t, o, time.Second)
	n := r.n
	at, bt := n.User("alice"), n.User("bob")
	tok := apnsToken("shared")
	register(t, n, at, "apns", tok)
	cases := []struct {
		name string
		body map[string]string
		want int
	}{
		{"bad platform", map[string]string{"platform": "wns", "token": "x"}, 400},
		{"no token", map[string]string{"platform": "fcm"}, 400},
		{"bad environment", map[string]string{"platform": "apns", "token": tok, "environment": "dev"}, 400},
	}
	for _, c := range cases {
		if code := n.HTTPDo("POST", "/v1/devices", at, c.body, nil); code != c.want {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
	}
	var sessions struct{ Sessions []struct{ ID string } }
	n.HTTPDo("GET", "/v1/me/sessions", at, nil, &sessions)
	ds := devices(t, n, at)
	if len(ds) != 1 || ds[0].Token != tok || ds[0].Environment != "sandbox" || len(sessions.Sessions) != 1 ||
		ds[0].Session != sessions.Sessions[0].ID {
		t.Fatalf("alice's devices = %+v, want the token bound to her session %+v", ds, sessions.Sessions)
	}
	// Bob cannot take it (testPushTokenBound has the rest), nor delete it.
	if code, msg := tryRegister(t, n, bt, "apns", tok); code != http.StatusConflict {
		t.Fatalf("bob registers alice's token: %d %q, want 409", code, msg)
	}
	if code := n.HTTPDo("DELETE", "/v1/devices/"+tok, bt, nil, nil); code != 404 {
		t.Fatalf("bob deletes alice's token: %d, want 404", code)
	}
	if code := n.HTTPDo("DELETE", "/v1/devices/"+tok, at, nil, nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if ds := devices(t, n, at); len(ds) != 0 {
		t.Fatalf("alice still has %+v", ds)
	}
}

func TestPushTokenBound(t *testing.T) { forEachStore(t, testPushTokenBound) }

// testPushTokenBound: a push token stays with the session that registered
// it. Another account's registration is refused (409) and the token goes on
// pushing to its owner; once the owner's session ends (ended from another
// session, or signed out) the token is unregistered and the other account
// may have it.
func testPushTokenBound(t *testing.T, o brokertest.Options) {
	r := startPush(t, o, 100*time.Millisecond)
	n := r.n
	at, ct := n.User("alice"), n.User("carol")
	bobPhone := n.User("bob")
	bobLaptop := n.Login("bob")
	tok := apnsToken("second-hand-phone")
	register(t, n, bobPhone, "apns", tok)

	code, msg := tryRegister(t, n, at, "apns", tok)
	if code != http.StatusConflict || !strings.Contains(msg, "registered to another account") {
		t.Fatalf("alice registers bob's token: %d %q, want 409 saying it is another account's", code, msg)
	}
	carol := n.MustV5("carol", ct, "carol", brokertest.V5Options{})
	carol.Pub(t, "u/bob", `{"body":{"text":"for bob"}}`)
	waitCount(t, "push to bob", r.apns.Count, 1, 0)
	if got := r.apns.Requests()[0]; got.Token != tok || got.Data["inbox"] != "u/bob" {
		t.Fatalf("pushed %+v, want bob's message to his token", got)
	}

	// Bob ends his phone's session from the laptop: the token goes with it.
	ds := devices(t, n, bobLaptop)
	if len(ds) != 1 || ds[0].Session == "" {
		t.Fatalf("bob's devices = %+v", ds)
	}
	if code := n.HTTPDo("DELETE", "/v1/me/sessions/"+ds[0].Session, bobLaptop, nil, nil); code != http.StatusNoContent {
		t.Fatalf("end the phone's session: %d", code)
	}
	if ds := devices(t, n, bobLaptop); len(ds) != 0 {
		t.Fatalf("bob's devices after the phone's session ended = %+v, want none", ds)
	}
	register(t, n, at, "apns", tok)
	carol.Pub(t, "u/alice", `{"body":{"text":"for alice"}}`)
	waitCount(t, "push to alice", r.apns.Count, 2, 0)
	if got := r.apns.Requests()[1]; got.Token != tok || got.Data["inbox"] != "u/alice" {
		t.Fatalf("pushed %+v, want alice's message to the token", got)
	}

	// Now bob is refused; alice may register it again from another
	// session, and signing that one out frees the token.
	if code, _ := tryRegister(t, n, bobLaptop, "apns", tok); code != http.StatusConflict {
		t.Fatalf("bob registers alice's token: %d, want 409", code)
	}
	aliceAgain := n.Login("alice")
	register(t, n, aliceAgain, "apns", tok)
	if code := n.HTTPDo("DELETE", "/v1/tokens/current", aliceAgain, nil, nil); code != http.StatusNoContent {
		t.Fatalf("sign out: %d", code)
	}
	if ds := devices(t, n, at); len(ds) != 0 {
		t.Fatalf("alice's devices after signing out = %+v, want none", ds)
	}
	register(t, n, bobLaptop, "apns", tok)
}

func TestPushDeviceCap(t *testing.T) { forEachStore(t, testPushDeviceCap) }

// testPushDeviceCap: past push.max_devices, registering a token unregisters
// the user's least recently updated one; the others go on pushing.
func testPushDeviceCap(t *testing.T, o brokertest.Options) {
	r := startPush(t, o, 100*time.Millisecond, func(c *broker.Config) { c.MaxPushDevices = 2 })
	n := r.n
	at, bt := n.User("alice"), n.User("bob")
	register(t, n, bt, "fcm", "fcm-1")
	register(t, n, bt, "fcm", "fcm-2")
	register(t, n, bt, "fcm", "fcm-3") // fcm-1 goes
	if got := deviceTokens(devices(t, n, bt)); !slices.Equal(got, []string{"fcm-2", "fcm-3"}) {
		t.Fatalf("bob's tokens = %v, want fcm-2, fcm-3", got)
	}
	register(t, n, bt, "fcm", "fcm-2") // a refresh, as an app's every launch
	register(t, n, bt, "fcm", "fcm-4") // fcm-3 goes
	if got := deviceTokens(devices(t, n, bt)); !slices.Equal(got, []string{"fcm-2", "fcm-4"}) {
		t.Fatalf("bob's tokens = %v, want fcm-2, fcm-4", got)
	}
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	alice.Pub(t, "u/bob", `{"body":{"text":"hi"}}`)
	waitCount(t, "pushes", r.fcm.Count, 2, 300*time.Millisecond)
	var got []string
	for _, req := range r.fcm.Requests() {
		got = append(got, req.Token)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"fcm-2", "fcm-4"}) {
		t.Fatalf("pushed to %v, want fcm-2 and fcm-4", got)
	}
}

func TestPushContentFree(t *testing.T) { forEachStore(t, testPushContentFree) }

// testPushContentFree: with previews off, what reaches APNs and FCM carries
// no text and no name (the sender's, the group's), only the ids the app
// fetches the message by; APNs gets mutable-content for the app's
// Notification Service Extension. The app then fetches the message with
// GET /v1/messages.
func testPushContentFree(t *testing.T, o brokertest.Options) {
	r := startPush(t, o, 100*time.Millisecond)
	n := r.n
	at, bt := n.User("alice"), n.User("bob")
	register(t, n, bt, "apns", apnsToken("bob-phone"))
	register(t, n, bt, "fcm", "fcm-bob-tablet")
	if code := n.HTTPDo("PUT", "/v1/me/push", bt, map[string]bool{"preview": false}, nil); code != 200 {
		t.Fatalf("preview off: %d", code)
	}
	g := createGroup(t, n, at, "Secret Society", "bob")
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	secrets := []string{"classified", "User alice", "Secret Society"}
	check := func(i int, inbox string) {
		t.Helper()
		a, f := r.apns.Requests()[i], r.fcm.Requests()[i]
		for _, raw := range [][]byte{a.Payload, f.Raw} {
			for _, s := range secrets {
				if strings.Contains(string(raw), s) {
					t.Errorf("a content-free push holds %q: %s", s, raw)
				}
			}
		}
		if a.Title != "" || a.Body != push.HiddenPreview || a.MutableContent != 1 || a.ThreadID != "" || a.CollapseID != "" {
			t.Errorf("apns notification = %+v, want content-free and mutable", a)
		}
		if f.Title != "" || f.Body != push.HiddenPreview || f.Tag != "" || f.CollapseKey != "" {
			t.Errorf("fcm notification = %+v, want content-free", f)
		}
		for k := range a.Data {
			if k != "inbox" && k != "seq" && k != "id" && k != "count" {
				t.Errorf("apns data has %q", k)
			}
		}
		for k := range f.Data {
			if k != "inbox" && k != "seq" && k != "id" && k != "count" {
				t.Errorf("fcm data has %q", k)
			}
		}
		if a.Data["inbox"] != inbox || f.Data["inbox"] != inbox || a.Data["id"] != f.Data["id"] || a.Data["seq"] != f.Data["seq"] {
			t.Fatalf("data: apns %v, fcm %v; want inbox %s", a.Data, f.Data, inbox)
		}
		// What the app does with it: fetch the message by inbox and seq.
		seq, err := strconv.ParseInt(f.Data["seq"], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Entries []struct {
				ID   string
				Body struct{ Text string }
			}
		}
		path := fmt.Sprintf("/v1/messages?inbox=%s&after=%d&limit=1", inbox, seq-1)
		if code := n.HTTPDo("GET", path, bt, nil, &page); code != 200 || len(page.Entries) != 1 ||
			page.Entries[0].ID != f.Data["id"] || !strings.HasPrefix(page.Entries[0].Body.Text, "classified") {
			t.Fatalf("GET %s: %d %+v, want the message", path, code, page.Entries)
		}
	}
	alice.Pub(t, "u/bob", `{"body":{"text":"classified plans"}}`)
	waitCount(t, "apns, direct", r.apns.Count, 1, 0)
	waitCount(t, "fcm, direct", r.fcm.Count, 1, 0)
	check(0, "u/bob")
	alice.Pub(t, "g/"+g.ID, `{"body":{"text":"classified minutes"}}`)
	waitCount(t, "apns, group", r.apns.Count, 2, 0)
	waitCount(t, "fcm, group", r.fcm.Count, 2, 0)
	check(1, "g/"+g.ID)
}

func TestPushTokenBounds(t *testing.T) { forEachStore(t, testPushTokenBounds) }

// testPushTokenBounds: a device token the store cannot index (4,096
// characters used to give a 500) or holding a NUL is refused with 400 and
// a reason, and the user's good registrations are unaffected.
func testPushTokenBounds(t *testing.T, o brokertest.Options) {
	r := startPush(t, o, time.Second)
	n := r.n
	bt := n.User("bob")
	for name, token := range map[string]string{
		"4,096 characters": strings.Repeat("a", 4096),
		"a NUL":            "abc\x00def",
	} {
		body := map[string]string{"platform": "fcm", "token": token, "device": "phone"}
		var out struct{ Error string }
		if code := n.HTTPDo("POST", "/v1/devices", bt, body, &out); code != http.StatusBadRequest || out.Error == "" {
			t.Fatalf("%s: status %d %q, want 400 with a reason", name, code, out.Error)
		}
	}
	register(t, n, bt, "fcm", "good-token")
	var list struct{ Devices []map[string]any }
	if code := n.HTTPDo("GET", "/v1/devices", bt, nil, &list); code != http.StatusOK || len(list.Devices) != 1 {
		t.Fatalf("devices after the refusals: status %d, %v", code, list.Devices)
	}
}
