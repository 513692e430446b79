package broker_test

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
)

// sessionJSON is a session of GET /v1/me/sessions.
type sessionJSON struct {
	ID           string    `json:"id"`
	Current      bool      `json:"current"`
	CreatedAt    time.Time `json:"created_at"`
	LastUsedAt   time.Time `json:"last_used_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	LastAddr     string    `json:"last_addr"`
	LastClientID string    `json:"last_client_id"`
	Connections  []struct {
		ClientID string `json:"client_id"`
		Node     string `json:"node"`
		Addr     string `json:"addr"`
	} `json:"connections"`
}

func listSessions(t *testing.T, n *brokertest.Node, token string) []sessionJSON {
	t.Helper()
	var out struct{ Sessions []sessionJSON }
	if code := n.HTTPDo("GET", "/v1/me/sessions", token, nil, &out); code != 200 {
		t.Fatalf("GET /v1/me/sessions: status %d", code)
	}
	return out.Sessions
}

// sessionWith returns the session whose connections include clientID.
func sessionWith(t *testing.T, ss []sessionJSON, clientID string) sessionJSON {
	t.Helper()
	for _, s := range ss {
		for _, c := range s.Connections {
			if c.ClientID == clientID {
				return s
			}
		}
	}
	t.Fatalf("no session lists the connection %s: %+v", clientID, ss)
	return sessionJSON{}
}

// waitEnded waits until the node no longer holds clientID's connection,
// within a second (scaled by the test patience).
func waitEnded(t *testing.T, n *brokertest.Node, clientID string) {
	t.Helper()
	testwait.Until(t, time.Second, clientID+" disconnected", func() bool { return !n.Srv.Connected(clientID) })
}

// wantDisconnect waits for the server's DISCONNECT to an MQTT 5 client and
// checks its reason code: 0x87 not authorized. (Its reason string, "token
// revoked" or "account deleted", is sent only to clients that ask for
// problem information; these do not.)
func wantDisconnect(t *testing.T, c *brokertest.V5) {
	t.Helper()
	var d *paho.Disconnect
	testwait.Until(t, time.Second, "the DISCONNECT", func() bool {
		select {
		case d = <-c.ServerDisconnect:
			return true
		default:
			return false
		}
	})
	if d.ReasonCode != 0x87 {
		t.Errorf("DISCONNECT %#x, want 0x87 not authorized", d.ReasonCode)
	}
}

func wantRefused(t *testing.T, n *brokertest.Node, user, token, clientID string) {
	t.Helper()
	c, err := n.DialV5(user, token, clientID, brokertest.V5Options{})
	if err == nil || c.Connack == nil || c.Connack.ReasonCode != 0x86 {
		t.Fatalf("CONNACK with a revoked token: %v, %+v; want 0x86", err, c.Connack)
	}
}

// TestRevokeSession: revoking a session ends its MQTT connections at once
// (MQTT 5: DISCONNECT 0x87; 3.1.1: closed); revoking the others keeps the
// current one.
func TestRevokeSession(t *testing.T) { forEachStore(t, testRevokeSession) }

func testRevokeSession(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	phoneToken := n.User("alice")
	oldToken, webToken := n.Login("alice"), n.Login("alice")
	bobToken := n.User("bob")
	phone := n.MustV5("alice", phoneToken, "alice/phone", persistent)
	phone.Sub(t, "u/alice", 1)
	old := n.MustV3("alice", oldToken, "alice/old", true)
	web := n.MustV5("alice", webToken, "alice/web", brokertest.V5Options{})
	web.Sub(t, "u/alice", 1)

	ss := listSessions(t, n, webToken)
	if len(ss) != 3 {
		t.Fatalf("%d sessions, want 3: %+v", len(ss), ss)
	}
	for _, s := range ss {
		if len(s.ID) != 24 || s.CreatedAt.IsZero() || !s.ExpiresAt.After(time.Now().Add(29*24*time.Hour)) {
			t.Errorf("session %+v: want an id, a creation time and 30 days to live", s)
		}
		if s.ID == phoneToken || s.ID == oldToken || s.ID == webToken {
			t.Fatal("a session's id is its token")
		}
	}
	phoneSession, webSession := sessionWith(t, ss, "alice/phone"), sessionWith(t, ss, "alice/web")
	if !webSession.Current || phoneSession.Current {
		t.Errorf("current: web %v, phone %v; want only the request's token's", webSession.Current, phoneSession.Current)
	}
	if c := phoneSession.Connections[0]; c.Addr != "127.0.0.1" || len(phoneSession.Connections) != 1 {
		t.Errorf("the phone's session's connections: %+v", phoneSession.Connections)
	}
	// A connection counts as a use of its token: where from is recorded.
	testwait.Until(t, 5*time.Second, "the phone's connection recorded as its token's last use", func() bool {
		return sessionWith(t, listSessions(t, n, webToken), "alice/phone").LastClientID == "alice/phone"
	})

	// Another user's session, an unknown one: 404, nothing ends.
	bobSession := listSessions(t, n, bobToken)[0]
	for _, id := range []string{bobSession.ID, "000000000000000000000000"} {
		if code := n.HTTPDo("DELETE", "/v1/me/sessions/"+id, webToken, nil, nil); code != 404 {
			t.Errorf("DELETE another's or an unknown session: %d, want 404", code)
		}
	}

	// One session: its connection ends within a second.
	if code := n.HTTPDo("DELETE", "/v1/me/sessions/"+phoneSession.ID, webToken, nil, nil); code != 204 {
		t.Fatalf("DELETE /v1/me/sessions/{id}: %d", code)
	}
	waitEnded(t, n, "alice/phone")
	wantDisconnect(t, phone)
	wantRefused(t, n, "alice", phoneToken, "alice/phone")
	if code := n.HTTPDo("GET", "/v1/me", phoneToken, nil, nil); code != 401 {
		t.Errorf("GET /v1/me with the revoked token: %d, want 401", code)
	}

	// Every other session: the MQTT 3.1.1 connection ends, the current
	// session's stays.
	var revoked struct{ Revoked int }
	if code := n.HTTPDo("DELETE", "/v1/me/sessions", webToken, nil, &revoked); code != 200 || revoked.Revoked != 1 {
		t.Fatalf("DELETE /v1/me/sessions: %d %+v, want 1 revoked", code, revoked)
	}
	waitEnded(t, n, "alice/old")
	testwait.Until(t, time.Second, "the 3.1.1 client to see its connection closed", func() bool { return !old.IsConnected() })
	if !n.Srv.Connected("alice/web") {
		t.Fatal("revoking the other sessions ended the current one")
	}
	if rc := web.Pub(t, "u/bob", "still here"); rc != 0 {
		t.Errorf("the current session's publish: PUBACK %#x", rc)
	}
	if ss := listSessions(t, n, webToken); len(ss) != 1 || !ss[0].Current {
		t.Errorf("sessions after revoking the others: %+v", ss)
	}
	if ss := listSessions(t, n, bobToken); len(ss) != 1 {
		t.Errorf("bob's sessions after alice's revocations: %+v", ss)
	}

	// Signing out (DELETE /v1/tokens/current) ends the token's
	// connections too.
	if code := n.HTTPDo("DELETE", "/v1/tokens/current", webToken, nil, nil); code != 204 {
		t.Fatalf("sign out: %d", code)
	}
	waitEnded(t, n, "alice/web")
}

// TestChangePasswordEndsOtherSessions: a password change needs the old
// password and ends every other session, its connections included.
func TestChangePasswordEndsOtherSessions(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	phoneToken := n.User("alice")
	webToken := n.Login("alice")
	phone := n.MustV5("alice", phoneToken, "alice/phone", brokertest.V5Options{})

	change := func(old, new string) (int, int) {
		var out struct{ Revoked int }
		code := n.HTTPDo("PUT", "/v1/me/password", webToken, map[string]string{"old_password": old, "new_password": new}, &out)
		return code, out.Revoked
	}
	if code, _ := change("wrong-password", "new-password-1"); code != 403 {
		t.Errorf("wrong old password: %d, want 403", code)
	}
	if code, _ := change("password-alice", "short"); code != 400 {
		t.Errorf("weak new password: %d, want 400", code)
	}
	if !n.Srv.Connected("alice/phone") {
		t.Fatal("a refused password change ended a connection")
	}
	if code, n := change("password-alice", "new-password-1"); code != 200 || n != 1 {
		t.Fatalf("password change: %d, %d revoked; want 200, 1", code, n)
	}
	waitEnded(t, n, "alice/phone")
	wantDisconnect(t, phone)
	if code := n.HTTPDo("GET", "/v1/me", webToken, nil, nil); code != 200 {
		t.Errorf("the current session after a password change: %d", code)
	}
	if code := n.HTTPDo("POST", "/v1/tokens", "", map[string]string{"id": "alice", "password": "password-alice"}, nil); code != 401 {
		t.Errorf("sign in with the old password: %d, want 401", code)
	}
	if code := n.HTTPDo("POST", "/v1/tokens", "", map[string]string{"id": "alice", "password": "new-password-1"}, nil); code != 200 {
		t.Errorf("sign in with the new password: %d, want 200", code)
	}
}

// TestDeleteAccount: DELETE /v1/me ends the user's connections, and the
// account cannot sign in again; what it sent others stays, attributed to a
// deleted user; its groups record its departure.
func TestDeleteAccount(t *testing.T) { forEachStore(t, testDeleteAccount) }

func testDeleteAccount(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	at, bt, ct := n.User("alice"), n.User("bob"), n.User("carol")
	bobsGroup := createGroup(t, n, bt, "bob's", "alice", "carol")
	alicesGroup := createGroup(t, n, at, "alice's", "bob")
	phone := n.MustV5("alice", at, "alice/phone", persistent)
	phone.Sub(t, "u/alice", 1)
	laptop := n.MustV3("alice", n.Login("alice"), "alice/laptop", false)
	if rc := phone.Pub(t, "u/bob", `{"cid":"c-1","body":{"text":"hello bob"}}`); rc != 0 {
		t.Fatalf("PUBACK %#x", rc)
	}
	if rc := phone.Pub(t, "g/"+bobsGroup.ID, "hello group"); rc != 0 {
		t.Fatalf("PUBACK %#x", rc)
	}
	bob := n.MustV5("bob", bt, "bob/phone", brokertest.V5Options{})
	bob.Sub(t, "g/"+bobsGroup.ID, 1)
	if rc := bob.Sub(t, "p/alice", 1); rc[0] != 1 {
		t.Fatalf("bob subscribing p/alice: %#x", rc[0])
	}
	waitPresence(t, bob.In, "p/alice", 1)

	if code := n.HTTPDo("DELETE", "/v1/me", at, map[string]string{"password": "wrong-password"}, nil); code != 403 {
		t.Fatalf("DELETE /v1/me with a wrong password: %d, want 403", code)
	}
	if code := n.HTTPDo("DELETE", "/v1/me", at, map[string]string{"password": "password-alice"}, nil); code != 204 {
		t.Fatalf("DELETE /v1/me: %d, want 204", code)
	}
	// Every connection ends within a second.
	waitEnded(t, n, "alice/phone")
	waitEnded(t, n, "alice/laptop")
	wantDisconnect(t, phone)
	testwait.Until(t, time.Second, "the 3.1.1 client to see its connection closed", func() bool { return !laptop.IsConnected() })

	// Nobody sees its presence any more: not its last state, not when it
	// was last seen.
	if got := lookup(t, n, bt, "alice"); got[0].Status != "hidden" {
		t.Errorf("GET /v1/presence of a deleted user: %+v, want hidden", got)
	}
	if rc := bob.Sub(t, "p/alice", 1); rc[0] != 0x87 {
		t.Errorf("subscribing p/alice of a deleted user: %#x, want 0x87", rc[0])
	}

	// It cannot sign in again, nor be signed up again.
	wantRefused(t, n, "alice", at, "alice/phone")
	for path, code := range map[string]int{"GET /v1/me": n.HTTPDo("GET", "/v1/me", at, nil, nil),
		"POST /v1/tokens": n.HTTPDo("POST", "/v1/tokens", "", map[string]string{"id": "alice", "password": "password-alice"}, nil)} {
		if code != 401 {
			t.Errorf("%s after the deletion: %d, want 401", path, code)
		}
	}
	if code := n.HTTPDo("POST", "/v1/users", "", map[string]string{"id": "alice", "password": "another-password"}, nil); code != 409 {
		t.Errorf("signing up as the deleted alice: %d, want 409 (ids are never reused)", code)
	}

	// Its message in bob's inbox stays, from alice, who is a deleted user.
	var page struct {
		Entries []struct {
			From string
			Type string
			Body map[string]any
		}
	}
	if code := n.HTTPDo("GET", "/v1/messages?inbox=u/bob&after=0", bt, nil, &page); code != 200 {
		t.Fatalf("bob's history: %d", code)
	}
	found := false
	for _, e := range page.Entries {
		found = found || (e.Type == protocol.TypeMsg && e.From == "alice" && e.Body["text"] == "hello bob")
	}
	if !found {
		t.Errorf("alice's message is gone from bob's inbox: %+v", page.Entries)
	}
	var u struct {
		ID, Name string
		Deleted  bool
	}
	if code := n.HTTPDo("GET", "/v1/users/alice", bt, nil, &u); code != 200 || u.Name != "Deleted user" || !u.Deleted {
		t.Errorf("GET /v1/users/alice: %d %+v; want the deleted user", code, u)
	}
	// A message to the deleted user is refused: it has no inbox.
	if rc := bob.Pub(t, "u/alice", "are you there?"); rc != 0x90 {
		t.Errorf("a DM to a deleted user: PUBACK %#x, want 0x90", rc)
	}

	// Its groups: it left each as a removal, the owner too.
	for _, g := range []groupJSON{bobsGroup, alicesGroup} {
		var got groupJSON
		if code := n.HTTPDo("GET", "/v1/groups/"+g.ID, bt, nil, &got); code != 200 {
			t.Fatalf("GET group: %d", code)
		}
		for _, m := range got.Members {
			if m == "alice" {
				t.Errorf("group %s still lists alice: %v", g.Name, got.Members)
			}
		}
	}
	bob.In.WaitFor(t, 5*time.Second, "alice's departure from bob's group", func(ms []brokertest.Msg) bool {
		for _, m := range ms {
			if m.Topic != "g/"+bobsGroup.ID {
				continue // presence
			}
			if h := m.Header(t); h.Type == protocol.TypeMemberRemoved && h.From == "alice" {
				return true
			}
		}
		return false
	})
	var history struct{ Entries []struct{ From, Type string } }
	if code := n.HTTPDo("GET", "/v1/messages?inbox=g/"+bobsGroup.ID+"&after=0", ct, nil, &history); code != 200 {
		t.Fatalf("the group's history: %d", code)
	}
	if !hasEntry(history.Entries, "alice", protocol.TypeMsg) {
		t.Errorf("alice's group message is gone: %+v", history.Entries)
	}
}

func hasEntry(es []struct{ From, Type string }, from, typ string) bool {
	for _, e := range es {
		if e.From == from && e.Type == typ {
			return true
		}
	}
	return false
}

// TestClusterRevokeSession: a session revoked through one node ends its
// connections on another node at once, and that node no longer accepts
// the token though it had it cached; deleting the account ends the user's
// connections everywhere.
func TestClusterRevokeSession(t *testing.T) {
	c := brokertest.StartCluster(t, 2, brokertest.Options{})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	phoneToken := n1.User("alice")
	webToken := n1.Login("alice")
	phone := n2.MustV5("alice", phoneToken, "alice/phone", persistent) // n2 now has phoneToken cached
	laptop := n2.MustV5("alice", webToken, "alice/laptop", brokertest.V5Options{})
	if code := n2.HTTPDo("GET", "/v1/me", phoneToken, nil, nil); code != 200 {
		t.Fatalf("GET /v1/me on n2: %d", code)
	}

	var ss []sessionJSON
	testwait.Until(t, 5*time.Second, "the phone's session", func() bool {
		ss = listSessions(t, n2, webToken)
		for _, s := range ss {
			if len(s.Connections) > 0 && s.Connections[0].ClientID == "alice/phone" {
				return s.Connections[0].Node == "n2"
			}
		}
		return false
	})
	phoneSession := sessionWith(t, ss, "alice/phone")
	if code := n1.HTTPDo("DELETE", "/v1/me/sessions/"+phoneSession.ID, webToken, nil, nil); code != 204 {
		t.Fatalf("DELETE /v1/me/sessions/{id} on n1: %d", code)
	}
	waitEnded(t, n2, "alice/phone")
	wantDisconnect(t, phone)
	// n2 had the token cached: it forgot it with the event.
	wantRefused(t, n2, "alice", phoneToken, "alice/phone")
	if code := n2.HTTPDo("GET", "/v1/me", phoneToken, nil, nil); code != 401 {
		t.Errorf("GET /v1/me on n2 with the revoked token: %d, want 401", code)
	}
	if !n2.Srv.Connected("alice/laptop") {
		t.Fatal("revoking one session ended another")
	}

	// Deleting the account through n1 ends its connections on n2.
	if code := n1.HTTPDo("DELETE", "/v1/me", webToken, map[string]string{"password": "password-alice"}, nil); code != 204 {
		t.Fatalf("DELETE /v1/me on n1: %d", code)
	}
	waitEnded(t, n2, "alice/laptop")
	wantDisconnect(t, laptop)
	wantRefused(t, n2, "alice", webToken, "alice/laptop")
}

// TestSessionCheck: a token revoked behind the node's back (in the store
// only, as parley users does on a node without NATS) ends its connections
// at the node's next check.
func TestSessionCheck(t *testing.T) {
	cfg := brokertestConfig()
	cfg.SessionCheck = 50 * time.Millisecond
	n := brokertest.Start(t, brokertest.Options{Config: cfg})
	token := n.User("alice")
	phone := n.MustV5("alice", token, "alice/phone", brokertest.V5Options{})
	h := sha256Of(token)
	if err := n.Store.DeleteToken(brokertest.Ctx(t, 5*time.Second), h); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, n, "alice/phone")
	wantDisconnect(t, phone)
}

func sha256Of(token string) []byte {
	h := auth.HashToken(token)
	return h[:]
}
