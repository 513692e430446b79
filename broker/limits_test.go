package broker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	p3packets "github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
)

// Limits on what one client or one user may cost (issue 10): bounded in
// count and time, each waiting for conditions, never for time.

// TestNULCidBesideFlood: a cid Postgres cannot store is refused at the door
// (0x99, or an error entry for 3.1.1) while another user's flood of good
// DMs is stored and acknowledged in full.
func TestNULCidBesideFlood(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Config: brokertestConfig()})
	at, mt, bt := n.User("alice"), n.User("mallory"), n.User("bob")
	_ = bt
	mallory := n.MustV5("mallory", mt, "mallory", brokertest.V5Options{})
	mallory3 := n.MustV3("mallory", mt, "mallory/v3", true)
	mallory3.Sub(t, "u/mallory", 1)
	const conns, each = 3, 100
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for c := 0; c < conns; c++ {
		cl := n.MustV5("alice", at, fmt.Sprintf("alice/%d", c), brokertest.V5Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if rc := cl.Pub(t, "u/bob", fmt.Sprintf(`{"cid":"a-%d-%d","body":{"text":"hi"}}`, c, i)); rc != 0 {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("a-%d-%d: %#x", c, i, rc))
					mu.Unlock()
				}
			}
		}()
	}
	poisons := []string{`{"cid":"a\u0000b","body":{}}`, `{"cid":"\u001b[2J","body":{"text":"x"}}`, "{\"cid\":\"x\x7f\",\"body\":{}}"}
	for i := 0; i < 10; i++ {
		p := poisons[i%len(poisons)]
		if rc := mallory.Pub(t, "u/bob", p); rc != byte(protocol.CodeBadPayload) {
			t.Errorf("poisoned cid %q: PUBACK %#x, want 0x99", p, rc)
		}
	}
	if err := mallory3.Pub(t, "u/bob", poisons[0]); err != nil {
		t.Fatalf("v3 poisoned publish: %v (want a PUBACK and an error entry)", err)
	}
	e := mallory3.In.WaitN(t, 1, protocol.TypeError)[0].Entry(t)
	if e["code"] != float64(protocol.CodeBadPayload) || !strings.Contains(e["reason"].(string), "printable") || e["cid"] != nil {
		t.Fatalf("v3 error entry = %v; want code 0x99 naming printable, no cid", e)
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d good DMs not acknowledged 0x00: %v", len(bad), bad)
	}
	es, err := n.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/bob", 0, 1000)
	if err != nil || len(es) != conns*each {
		t.Fatalf("u/bob holds %d entries (%v), want the %d good DMs", len(es), err, conns*each)
	}
	for _, e := range es {
		if e.From != "alice" {
			t.Fatalf("stored entry from %s: %+v", e.From, e)
		}
	}
}

// TestUserRateAcrossConnections: three connections of one user share the
// user's rate; its refusals come as 0x97, and a connection that goes on
// publishing while refused is disconnected with 0x96.
func TestUserRateAcrossConnections(t *testing.T) {
	cfg := brokertestConfig()
	cfg.Inbox.Rate, cfg.Inbox.Burst = 1000, 1000 // the connections' own limits stay out of the way
	cfg.Inbox.UserRate, cfg.Inbox.UserBurst = 5, 10
	cfg.Inbox.RateStrikes, cfg.Inbox.StrikeWindow = 1000, time.Minute
	n := brokertest.Start(t, brokertest.Options{Config: cfg})
	at := n.User("alice")
	n.User("bob")
	start := time.Now()
	var mu sync.Mutex
	codes := map[byte]int{}
	var wg sync.WaitGroup
	for c := 0; c < 3; c++ {
		cl := n.MustV5("alice", at, fmt.Sprintf("alice/%d", c), brokertest.V5Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				rc := cl.Pub(t, "u/bob", "hi")
				mu.Lock()
				codes[rc]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	allowed := 10 + int(5*elapsed.Seconds()) + 1
	if codes[0] < 10 || codes[0] > allowed || codes[0]+codes[0x97] != 30 {
		t.Fatalf("PUBACK codes %v in %v: want 10 to %d successes (one user's burst and rate across 3 connections), the rest 0x97",
			codes, elapsed, allowed)
	}
	es, _ := n.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/bob", 0, 100)
	if len(es) != codes[0] {
		t.Fatalf("stored %d, acknowledged %d", len(es), codes[0])
	}

	t.Run("strikes disconnect", func(t *testing.T) {
		cfg := brokertestConfig()
		cfg.Inbox.Rate, cfg.Inbox.Burst = 0.001, 1
		cfg.Inbox.RateStrikes, cfg.Inbox.StrikeWindow = 3, time.Hour
		n := brokertest.Start(t, brokertest.Options{Config: cfg})
		at := n.User("alice")
		n.User("bob")
		cl, disc := dialWatch(t, n, "alice", at, "alice")
		var rcs []byte
		for i := 0; i < 4; i++ {
			pr, err := cl.Publish(brokertest.Ctx(t, 5*time.Second), &paho.Publish{Topic: "u/bob", QoS: 1, Payload: []byte("x")})
			if pr == nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			rcs = append(rcs, pr.ReasonCode)
		}
		if string(rcs) != "\x00\x97\x97\x97" {
			t.Fatalf("PUBACK codes %x, want 00 97 97 97", rcs)
		}
		// A refusal more than RateStrikes: DISCONNECT 0x96, no PUBACK.
		ctx, cancel := context.WithCancel(context.Background())
		published := make(chan struct{})
		go func() {
			defer close(published)
			_, _ = cl.Publish(ctx, &paho.Publish{Topic: "u/bob", QoS: 1, Payload: []byte("x")}) // answered by a DISCONNECT
		}()
		defer func() { cancel(); <-published }()
		select {
		case rc := <-disc:
			if rc != 0x96 {
				t.Fatalf("DISCONNECT %#x, want 0x96 message rate too high", rc)
			}
		case <-time.After(brokertest.Patience(5 * time.Second)):
			t.Fatal("no DISCONNECT after the strikes")
		}
	})
}

// dialWatch connects an MQTT 5 client that reports the reason code of a
// server's DISCONNECT.
func dialWatch(t *testing.T, n *brokertest.Node, user, secret, id string) (*paho.Client, <-chan byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", n.MQTT, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	disc := make(chan byte, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: id, OnClientError: func(error) {},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case disc <- d.ReasonCode:
			default:
			}
		}})
	if _, err := c.Connect(brokertest.Ctx(t, 5*time.Second), &paho.Connect{ClientID: id, Username: user, UsernameFlag: true,
		Password: []byte(secret), PasswordFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
		conn.Close()
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}); conn.Close() })
	return c, disc
}

// TestRefusedFloodBoundedErrorEntries: a 3.1.1 client flooding refused
// publishes (long topics, large payloads) gets PUBACKs, but only a few
// small error entries are stored; the next one counts the rest.
func TestRefusedFloodBoundedErrorEntries(t *testing.T) {
	cfg := brokertestConfig()
	cfg.Inbox.ErrorEntries, cfg.Inbox.ErrorWindow = 3, 3*time.Second // one more each second
	n := brokertest.Start(t, brokertest.Options{Config: cfg})
	at := n.User("alice")
	alice := n.MustV3("alice", at, "alice", true)
	alice.Sub(t, "u/alice", 1)
	topic := "plain/" + strings.Repeat("t", 240)
	payload := `{"cid":"c","body":{"text":"` + strings.Repeat("p", 3000) + `"}}`
	const flood = 60
	start := time.Now()
	for i := 0; i < flood; i++ {
		if err := alice.Pub(t, topic, payload); err != nil {
			t.Fatalf("refused publish %d: %v (3.1.1 gets a PUBACK for a lasting refusal)", i, err)
		}
	}
	bound := 3 + int(time.Since(start).Seconds()) + 1
	// Refusals go on until an error entry says how many were suppressed.
	// (The budget refills one entry a second; probes beyond it are
	// suppressed too, and their topic is not the flood's.)
	var last map[string]any
	testwait.Until(t, 10*time.Second, "an error entry counting suppressed refusals", func() bool {
		if err := alice.Pub(t, "plain/x", "x"); err != nil {
			t.Fatal(err)
		}
		for _, m := range alice.In.All() {
			if e := m.Entry(t); e["type"] == protocol.TypeError && e["suppressed"] != nil {
				last = e
			}
		}
		return last != nil
	})
	if s := last["suppressed"].(float64); s < flood-float64(bound) {
		t.Fatalf("suppressed %v, want at least %d", s, flood-bound)
	}
	es, err := n.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/alice", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	inFlood := 0
	for _, e := range es {
		if e.Type != protocol.TypeError {
			t.Fatalf("stored %+v", e)
		}
		if len(e.Data) > protocol.MaxErrorData || strings.Contains(string(e.Data), "ppp") {
			t.Fatalf("error entry of %d bytes: %s", len(e.Data), e.Data)
		}
		if strings.Contains(string(e.Data), "plain/ttt") {
			inFlood++
		}
	}
	if inFlood > bound {
		t.Fatalf("%d error entries stored for %d refused publishes, bound %d", inFlood, flood, bound)
	}
}

// TestRateLimitedV3NeverAckedUnstored: a 3.1.1 publisher over its rate is
// slowed down, and past what waiting can absorb disconnected; every publish
// it got a PUBACK for is in the store.
func TestRateLimitedV3NeverAckedUnstored(t *testing.T) {
	check := func(t *testing.T, n *brokertest.Node, acked []string) {
		t.Helper()
		es, err := n.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/bob", 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		stored := map[string]bool{}
		for _, e := range es {
			stored[e.Cid] = true
		}
		for _, cid := range acked {
			if !stored[cid] {
				t.Fatalf("%s was acknowledged but is not stored (stored %d)", cid, len(es))
			}
		}
		es, _ = n.Store.Read(brokertest.Ctx(t, 5*time.Second), "u/alice", 0, 1000)
		for _, e := range es {
			if e.Type == protocol.TypeError {
				t.Fatalf("error entry for a rate refusal: %s", e.Data)
			}
		}
	}
	publishAll := func(t *testing.T, c *brokertest.V3, count int) (acked []string, lost bool) {
		t.Helper()
		toks := make([]paho3.Token, count)
		for i := range toks {
			toks[i] = c.Publish("u/bob", 1, false, fmt.Sprintf(`{"cid":"m%d","body":{}}`, i))
		}
		for i, tok := range toks {
			if !tok.WaitTimeout(brokertest.Patience(10 * time.Second)) {
				t.Fatalf("publish %d: neither acknowledged nor failed", i)
			}
			if tok.Error() == nil {
				acked = append(acked, fmt.Sprintf("m%d", i))
			} else {
				lost = true
			}
		}
		return acked, lost
	}

	t.Run("slowed down", func(t *testing.T) {
		cfg := brokertestConfig()
		cfg.Inbox.Rate, cfg.Inbox.Burst = 20, 5
		n := brokertest.Start(t, brokertest.Options{Config: cfg})
		at := n.User("alice")
		n.User("bob")
		alice := n.MustV3("alice", at, "alice", true)
		start := time.Now()
		acked, lost := publishAll(t, alice, 30)
		if lost || len(acked) != 30 {
			t.Fatalf("%d of 30 acknowledged (lost %v): waiting on the limit should absorb 20/s", len(acked), lost)
		}
		if el := time.Since(start); el < time.Second {
			t.Fatalf("30 publishes at 20/s after a burst of 5 took %v: not slowed down", el)
		}
		check(t, n, acked)
	})
	t.Run("disconnected", func(t *testing.T) {
		cfg := brokertestConfig()
		cfg.Inbox.Rate, cfg.Inbox.Burst = 0.1, 3 // the 4th would wait 10s
		n := brokertest.Start(t, brokertest.Options{Config: cfg})
		at := n.User("alice")
		n.User("bob")
		alice := n.MustV3("alice", at, "alice", true)
		acked, lost := publishAll(t, alice, 10)
		if !lost || len(acked) != 3 {
			t.Fatalf("acknowledged %v (lost %v); want the burst of 3, then a disconnect", acked, lost)
		}
		check(t, n, acked)
	})
}

// TestConnectionCapPerUser: a user's connections beyond the cap are
// refused with a clear code; a takeover of one's own client id is not a
// new connection, and a closed connection frees its place.
func TestConnectionCapPerUser(t *testing.T) {
	cfg := brokertestConfig()
	cfg.Auth.MaxConnectionsPerUser = 3
	n := brokertest.Start(t, brokertest.Options{Config: cfg})
	at := n.User("alice")
	bt := n.User("bob")
	var cls []*brokertest.V5
	for i := 0; i < 3; i++ {
		cls = append(cls, n.MustV5("alice", at, fmt.Sprintf("alice/%d", i), brokertest.V5Options{}))
	}
	c, err := n.DialV5("alice", at, "alice/3", brokertest.V5Options{})
	if err == nil || c.Connack == nil || c.Connack.ReasonCode != 0x97 {
		t.Fatalf("4th connection: %v, CONNACK %+v; want refused with 0x97", err, c.Connack)
	}
	if _, err := n.DialV3("alice", at, "alice/v3", true); !errors.Is(err, p3packets.ErrorRefusedServerUnavailable) {
		t.Fatalf("4th connection over 3.1.1: %v; want return code 3", err)
	}
	n.MustV5("bob", bt, "bob", brokertest.V5Options{}) // other users are not affected
	n.MustV5("alice", at, "alice/1", brokertest.V5Options{})
	cls[0].Close()
	// Refused with 0x97 until the server has handled the close.
	testwait.Until(t, 5*time.Second, "a connection admitted after one closed", func() bool {
		c, err := n.DialV5("alice", at, "alice/4", brokertest.V5Options{})
		if err != nil && (c.Connack == nil || c.Connack.ReasonCode != 0x97) {
			t.Fatalf("connection after one closed: %v", err)
		}
		return err == nil
	})
}

// TestClientIDBounds: an over-long or unprintable client id is refused at
// CONNECT, before it can reach the cursors table.
func TestClientIDBounds(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Config: brokertestConfig()})
	at := n.User("alice")
	// mochi itself closes a connection whose client id holds NUL
	// [MQTT-1.5.3-2], before any CONNACK.
	if c, err := n.DialV5("alice", at, "alice/\x00", brokertest.V5Options{}); err == nil || c.Connack != nil && c.Connack.ReasonCode < 0x80 {
		t.Fatalf("client id with NUL accepted")
	}
	for name, id := range map[string]string{
		"6,000 bytes": "alice/" + strings.Repeat("x", 6000),
		"129 bytes":   "alice/" + strings.Repeat("x", 123),
		"escape":      "alice/\x1b[2J",
		"newline":     "alice/a\nb",
		"C1 control":  "alice/\u0085",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := n.DialV5("alice", at, id, brokertest.V5Options{})
			if err == nil || c.Connack == nil || c.Connack.ReasonCode != 0x85 {
				t.Fatalf("CONNACK %+v (%v); want 0x85", c.Connack, err)
			}
			if _, err := n.DialV3("alice", at, id, true); !errors.Is(err, p3packets.ErrorRefusedIDRejected) {
				t.Fatalf("3.1.1: %v; want return code 2", err)
			}
		})
	}
	n.MustV5("alice", at, "alice/"+strings.Repeat("x", 122), persistent) // 128 bytes
}

// TestSubscribeBounds: a SUBSCRIBE with too many filters is refused whole,
// over-long or over-deep filters one by one; the connection stays usable.
func TestSubscribeBounds(t *testing.T) {
	cfg := brokertestConfig()
	cfg.Inbox.MaxFilters = 4
	n := brokertest.Start(t, brokertest.Options{Config: cfg})
	at := n.User("alice")
	alice := n.MustV5("alice", at, "alice", brokertest.V5Options{})
	admin := n.MustV5(brokertest.Admin, brokertest.AdminPassword, "console", brokertest.V5Options{})
	var subs []paho.SubscribeOptions
	for i := 0; i < 5; i++ {
		subs = append(subs, paho.SubscribeOptions{Topic: fmt.Sprintf("p/u%d", i), QoS: 1})
	}
	subs[0].Topic = "u/alice"
	sa, err := alice.Subscribe(brokertest.Ctx(t, 5*time.Second), &paho.Subscribe{Subscriptions: subs})
	if sa == nil {
		t.Fatalf("subscribe: %v", err)
	}
	if string(sa.Reasons) != strings.Repeat("\x97", 5) {
		t.Fatalf("SUBACK %x for 5 filters, want 97 each", sa.Reasons)
	}
	if rc := alice.Sub(t, "u/alice", 1); rc[0] != 1 {
		t.Fatalf("then subscribing u/alice: %#x", rc[0])
	}
	v3 := n.MustV3("alice", at, "alice/v3", true)
	filters := map[string]byte{}
	for i := 0; i < 5; i++ {
		filters[fmt.Sprintf("x/%d", i)] = 1
	}
	tok := v3.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("v3 subscribe: no SUBACK")
	}
	for f, rc := range tok.(*paho3.SubscribeToken).Result() {
		if rc != 0x80 {
			t.Fatalf("v3 SUBACK for %s: %#x, want 0x80", f, rc)
		}
	}
	for name, filter := range map[string]string{ // administrators may use wildcards and plain topics
		"deep": "a/b/c/d/e/f/g/h/i",
		"long": "a/" + strings.Repeat("x", 300),
		"huge": strings.Repeat("+/", 9000) + "#", // within the packet size limit
	} {
		if rc := admin.Sub(t, filter, 1); rc[0] != 0x8f {
			t.Fatalf("%s filter: SUBACK %#x, want 0x8F", name, rc[0])
		}
	}
	if rc := admin.Pub(t, "a/"+strings.Repeat("x", 300), "x"); rc != 0x90 {
		t.Fatalf("publish to a long topic: %#x, want 0x90", rc)
	}
	if rc := admin.Sub(t, "a/b/c/d/e/f/g/#", 1); rc[0] != 1 {
		t.Fatalf("8-level filter: %#x", rc[0])
	}
}

// TestSessionCapEvictsOldest: past the user's persistent-session cap the
// session disconnected longest goes; the others stay.
func TestSessionCapEvictsOldest(t *testing.T) {
	cfg := brokertestConfig()
	cfg.Inbox.MaxSessionsPerUser = 2
	n := brokertest.Start(t, brokertest.Options{Config: cfg})
	at := n.User("alice")
	for _, id := range []string{"alice/1", "alice/2"} {
		c := n.MustV5("alice", at, id, persistent)
		c.Sub(t, "u/alice", 1)
		c.Close()
		n.WaitGone(t, id)
	}
	n.MustV5("alice", at, "alice/3", persistent) // evicts alice/1
	if c := n.MustV5("alice", at, "alice/2", persistent); !c.Connack.SessionPresent {
		t.Fatal("alice/2 lost its session")
	}
	if c := n.MustV5("alice", at, "alice/1", persistent); c.Connack.SessionPresent {
		t.Fatal("alice/1 kept its session past the cap")
	}
}
