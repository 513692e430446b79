package broker_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/push"
)

// The HTTP API's answers, as a running node gives them, are golden files
// shared with the TypeScript SDK (web/packages/client), whose tests decode
// every one: protocol/testdata/golden/api. What changes from run to run
// (ids, tokens, times, ports) is replaced by fixed values; the rest is the
// server's own bytes. Without -update the test compares, and fails when an
// answer changed without the files:
//
//	go test ./broker -run Golden -update
var update = flag.Bool("update", false, "rewrite the golden files in protocol/testdata/golden/api")

const goldenAPIDir = "../protocol/testdata/golden/api"

// goldenScrub replaces what varies between runs with fixed values, keeping
// the answers' bytes otherwise: each message id becomes a fixed one in
// order of first appearance, the same in every file.
type goldenScrub struct {
	fixed map[string]string // known volatile strings (tokens, session and group ids) -> fixed
	ids   map[string]string // message ids -> fixed
}

var (
	uuidRE  = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}`)
	msTimes = map[string]string{"ts": "1795797858765", "last_seen": "1795797999000"}
	rfcRE   = regexp.MustCompile(`"(created_at|last_used_at|expires_at|since|at|updated_at)":"[^"]*"`)
	rfcFix  = map[string]string{
		"created_at": "2026-12-01T09:00:00Z", "last_used_at": "2026-12-01T09:05:00Z", "expires_at": "2026-12-31T09:05:00Z",
		"since": "2026-12-01T09:04:00Z", "at": "2026-12-01T09:10:00Z", "updated_at": "2026-12-01T09:20:00Z",
	}
	addrRE = regexp.MustCompile(`"addr":"127\.0\.0\.1:\d+"`)
)

func (s *goldenScrub) scrub(b []byte) []byte {
	out := string(b)
	keys := make([]string, 0, len(s.fixed))
	for k := range s.fixed {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return len(keys[i]) > len(keys[j]) || len(keys[i]) == len(keys[j]) && keys[i] < keys[j]
	})
	for _, k := range keys {
		out = strings.ReplaceAll(out, k, s.fixed[k])
	}
	out = uuidRE.ReplaceAllStringFunc(out, func(id string) string {
		if f, ok := s.ids[id]; ok {
			return f
		}
		f := fmt.Sprintf("01a21de4-b9cd-7db5-95fc-%012d", len(s.ids)+1)
		s.ids[id] = f
		return f
	})
	for key, v := range msTimes {
		out = regexp.MustCompile(`"`+key+`":\d+`).ReplaceAllString(out, `"`+key+`":`+v)
	}
	out = rfcRE.ReplaceAllStringFunc(out, func(m string) string {
		key := rfcRE.FindStringSubmatch(m)[1]
		return `"` + key + `":"` + rfcFix[key] + `"`
	})
	return []byte(addrRE.ReplaceAllString(out, `"addr":"127.0.0.1:50000"`))
}

// goldenHTTP sends a request and returns the status and the body.
func goldenHTTP(t *testing.T, n *brokertest.Node, method, path, bearer string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.HTTP+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// TestGoldenAPI drives a node through a short story (a direct chat with
// receipts and a read marker, a group's whole life, presence, consent,
// push settings, sessions) and keeps the answers of the routes a client
// reads.
func TestGoldenAPI(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Store: brokertest.SQLite, Push: push.NewLog(nil)})
	sc := &goldenScrub{fixed: map[string]string{}, ids: map[string]string{}}
	token := func(who, tok string) string {
		h := auth.HashToken(tok)
		sc.fixed[tok] = "token-" + who
		sc.fixed[auth.SessionID(h[:])] = "session-" + who
		return tok
	}
	var written []string
	keep := func(name string, wantStatus, status int, body []byte) {
		t.Helper()
		if status != wantStatus {
			t.Fatalf("%s: status %d, want %d: %s", name, status, wantStatus, body)
		}
		written = append(written, name+".json")
		checkAPIGolden(t, name+".json", sc.scrub(body))
	}
	get := func(name, path, bearer string) {
		t.Helper()
		code, b := goldenHTTP(t, n, "GET", path, bearer, nil)
		keep(name, 200, code, b)
	}
	do := func(method, path, bearer string, body any, want int) []byte {
		t.Helper()
		code, b := goldenHTTP(t, n, method, path, bearer, body)
		if code != want {
			t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, b)
		}
		return b
	}
	entries := func(inbox, bearer string) int {
		var page struct{ Entries []json.RawMessage }
		if code := n.HTTPDo("GET", "/v1/messages?inbox="+inbox, bearer, nil, &page); code != 200 {
			t.Fatalf("messages of %s: %d", inbox, code)
		}
		return len(page.Entries)
	}
	waitEntries := func(inbox, bearer string, want int) {
		t.Helper()
		testwait.Until(t, 10*time.Second, fmt.Sprintf("%d entries in %s", want, inbox), func() bool { return entries(inbox, bearer) >= want })
		if got := entries(inbox, bearer); got != want {
			t.Fatalf("%s holds %d entries, want %d", inbox, got, want)
		}
	}

	// Accounts. bob's phone uses the token of its sign-up; bob's HTTP
	// calls, a second session, that of a sign-in.
	code, b := goldenHTTP(t, n, "POST", "/v1/users", "", map[string]string{"id": "bob", "password": "password-bob", "name": "Bob"})
	var signup struct{ Token string }
	if err := json.Unmarshal(b, &signup); err != nil || code != 201 {
		t.Fatalf("sign up bob: %d %s", code, b)
	}
	token("bob-phone", signup.Token)
	keep("signup", 201, code, b)
	code, b = goldenHTTP(t, n, "POST", "/v1/tokens", "", map[string]string{"id": "bob", "password": "password-bob"})
	var signin struct{ Token string }
	if err := json.Unmarshal(b, &signin); err != nil || code != 200 {
		t.Fatalf("sign in bob: %d %s", code, b)
	}
	bob := token("bob-web", signin.Token)
	keep("signin", 200, code, b)
	alice, carol, erin, frank := token("alice", n.User("alice")), token("carol", n.User("carol")), token("erin", n.User("erin")), token("frank", n.User("frank"))

	phone := n.MustV5("bob", signup.Token, "bob/phone", brokertest.V5Options{SessionExpiry: 3600})
	phone.Sub(t, "u/bob", 1)
	aliceDev := n.MustV5("alice", alice, "alice/web", brokertest.V5Options{SessionExpiry: 3600})

	// A direct chat: two messages, each delivered (bob's phone acknowledges
	// it), then read.
	if c := aliceDev.Pub(t, "u/bob", `{"cid":"c-1","body":{"text":"hi bob"}}`); c != 0 {
		t.Fatalf("PUBACK %#x", c)
	}
	waitEntries("u/alice", alice, 2) // the sender's copy and the delivered receipt
	if c := aliceDev.Pub(t, "u/bob", `plain text: 5 > 3 & "quoted" ☀️`); c != 0 {
		t.Fatalf("PUBACK %#x", c)
	}
	waitEntries("u/alice", alice, 4)
	if c := phone.Pub(t, "u/bob", `{"type":"read","inbox":"u/bob","seq":2,"with":"alice"}`); c != 0 {
		t.Fatalf("read PUBACK %#x", c)
	}
	waitEntries("u/bob", bob, 3)     // two messages and the read echo
	waitEntries("u/alice", alice, 5) // and the read receipt
	get("messages-sender", "/v1/messages?inbox=u/alice", alice)

	// A group's life: created with bob and carol, renamed, its history
	// opened, erin added and removed, carol leaving, a message.
	code, b = goldenHTTP(t, n, "POST", "/v1/groups", alice, map[string]any{"name": "Trip", "members": []string{"bob", "carol"}})
	var g struct{ ID string }
	if err := json.Unmarshal(b, &g); err != nil || code != 201 {
		t.Fatalf("create group: %d %s", code, b)
	}
	sc.fixed[g.ID] = "k3x7q2m9wz"
	keep("group-created", 201, code, b)
	group := "g/" + g.ID
	do("PATCH", "/v1/groups/"+g.ID, alice, map[string]string{"name": "Road trip"}, 200)
	do("PATCH", "/v1/groups/"+g.ID, alice, map[string]string{"history": "full"}, 200)
	do("POST", "/v1/groups/"+g.ID+"/members", alice, map[string]string{"user": "erin"}, 200)
	do("DELETE", "/v1/groups/"+g.ID+"/members/erin", alice, nil, 204)
	do("DELETE", "/v1/groups/"+g.ID+"/members/carol", carol, nil, 204)
	if c := aliceDev.Pub(t, group, `{"cid":"c-2","body":{"text":"see you at 9","place":{"name":"Station","lat":48.85}}}`); c != 0 {
		t.Fatalf("PUBACK %#x", c)
	}
	waitEntries(group, bob, 7)
	waitEntries("u/bob", bob, 4) // and the notice of being added
	get("group", "/v1/groups/"+g.ID, bob)
	get("groups", "/v1/me/groups", bob)
	get("messages-group", "/v1/messages?inbox="+group, bob)
	get("messages-group-older", "/v1/messages?inbox="+group+"&before=4&limit=2", bob)
	get("messages-removed-member", "/v1/messages?inbox="+group, carol)
	get("messages", "/v1/messages?inbox=u/bob", bob)
	get("conversations", "/v1/me/conversations", bob)

	// Presence: bob online, carol gone (last seen), frank never seen, erin
	// hiding, and an unknown id.
	carolDev := n.MustV5("carol", carol, "carol/phone", brokertest.V5Options{})
	carolDev.Close()
	n.WaitGone(t, "carol/phone")
	do("PUT", "/v1/me/presence", erin, map[string]string{"privacy": "nobody"}, 200)
	testwait.Until(t, 10*time.Second, "carol's last_seen", func() bool {
		_, b := goldenHTTP(t, n, "GET", "/v1/presence?users=carol", bob, nil)
		return bytes.Contains(b, []byte(`"last_seen"`))
	})
	get("presence", "/v1/presence?users=bob,carol,frank,erin,zed", bob)
	do("PUT", "/v1/me/presence", bob, map[string]string{"privacy": "contacts"}, 200)
	get("presence-privacy", "/v1/me/presence", bob)

	// Blocking and consent.
	do("PUT", "/v1/me/blocks/frank", bob, nil, 204)
	do("PUT", "/v1/me/contacts/alice", bob, nil, 204)
	do("PUT", "/v1/me/contacts/carol", bob, nil, 204)
	do("PUT", "/v1/me/consent", bob, map[string]string{"group_adds": "contacts"}, 200)
	get("blocks", "/v1/me/blocks", bob)
	get("contacts", "/v1/me/contacts", bob)
	get("consent", "/v1/me/consent", bob)

	// Push: a token, previews, mutes.
	code, b = goldenHTTP(t, n, "POST", "/v1/devices", bob, map[string]string{"platform": "fcm", "token": "fcm-token-of-bobs-phone", "device": "bob/phone"})
	keep("device-registered", 200, code, b)
	get("devices", "/v1/devices", bob)
	do("PUT", "/v1/me/mutes/u/alice", bob, nil, 200)
	do("PUT", "/v1/me/mutes/"+group, bob, map[string]string{"until": "2030-01-01T09:00:00Z"}, 200)
	get("push", "/v1/me/push", bob)

	// Users: bob, and frank once his account is deleted.
	get("me", "/v1/me", bob)
	do("DELETE", "/v1/me", frank, map[string]string{"password": "password-frank"}, 204)
	get("user-deleted", "/v1/users/frank", bob)

	// Sessions: once both of bob's uses are written (every second).
	testwait.Until(t, 10*time.Second, "bob's token uses written", func() bool {
		var out struct {
			Sessions []struct {
				LastAddr string `json:"last_addr"`
			}
		}
		n.HTTPDo("GET", "/v1/me/sessions", bob, nil, &out)
		return len(out.Sessions) == 2 && out.Sessions[0].LastAddr != "" && out.Sessions[1].LastAddr != ""
	})
	get("sessions", "/v1/me/sessions", bob)

	// An error: {"error"}.
	code, b = goldenHTTP(t, n, "GET", "/v1/messages?inbox=u/alice", bob, nil)
	keep("error", 403, code, b)

	files, _ := filepath.Glob(filepath.Join(goldenAPIDir, "*.json"))
	for _, f := range files {
		if !slices.Contains(written, filepath.Base(f)) {
			t.Errorf("%s: no longer written: delete it", f)
		}
	}
}

// checkAPIGolden writes (with -update) or compares a golden file of
// protocol/testdata/golden/api, as indented JSON.
func checkAPIGolden(t *testing.T, name string, body []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(body), "", "  "); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", name, err, body)
	}
	buf.WriteByte('\n')
	path := filepath.Join(goldenAPIDir, name)
	if *update {
		if err := os.MkdirAll(goldenAPIDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v (run go test ./broker -run Golden -update)", name, err)
	}
	if !bytes.Equal(want, buf.Bytes()) {
		t.Errorf("%s differs from the server's answer: the HTTP API changed.\n"+
			"If that is meant, run go test ./broker -run Golden -update, and update the SDK (web/packages/client) and docs/protocol.md.\n"+
			"--- %s\n%s\n--- now\n%s", name, path, want, buf.Bytes())
	}
}
