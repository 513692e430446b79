package protocol

import (
	"bytes"
	"encoding/json"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The golden files in testdata/golden are the wire contract shared with the
// TypeScript SDK (web/packages/client), whose tests decode every one of
// them: entries of every type, presence payloads and what clients publish
// are written here from this package's own encoders; the HTTP API's
// answers by broker/golden_test.go from a running node. Without -update
// the tests compare, and fail when an encoder changed without the files:
//
//	go test ./protocol -run Golden -update
var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenDir is where the shared fixtures live.
const goldenDir = "testdata/golden"

// Golden writes (with -update) or compares testdata/golden/name: v as
// indented JSON, each value's own bytes kept as the encoder wrote them
// (field order, escapes).
func checkGolden(t *testing.T, name string, v json.RawMessage) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, v, "", "  "); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", name, err, v)
	}
	buf.WriteByte('\n')
	path := filepath.Join(goldenDir, name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v (run go test ./protocol -run Golden -update)", name, err)
	}
	if !bytes.Equal(want, buf.Bytes()) {
		t.Errorf("%s differs from what the encoders write now: the wire contract changed.\n"+
			"If that is meant, run go test ./protocol -run Golden -update, and update the SDK (web/packages/client) and docs/protocol.md.\n"+
			"--- %s\n%s\n--- now\n%s", name, path, want, buf.Bytes())
	}
}

// array joins values into a JSON array.
func array(vs ...json.RawMessage) json.RawMessage {
	b := []byte{'['}
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, v...)
	}
	return append(b, ']')
}

// The fixtures' people, group and times: fixed, so that the files only
// change when the encoders do.
const (
	gGroup = "k3x7q2m9wz"
	gInbox = GroupPrefix + gGroup
	gTS    = int64(1795797858765)
)

func gID(n int) string {
	return "01a21de4-b9cd-7db5-95fc-af2c74dfd" + strconv.FormatInt(int64(0xe00+n), 16)
}

func entry(e Entry) json.RawMessage { return e.AppendJSON(nil) }

// goldenEntries are examples of every entry type, by type: what a
// subscriber of an inbox topic receives and GET /v1/messages pages hold.
func goldenEntries() map[string][]json.RawMessage {
	return map[string][]json.RawMessage{
		TypeMsg: {
			// A direct message: the recipient's copy and the sender's.
			entry(Entry{ID: gID(1), Inbox: "u/bob", Seq: 2, From: "alice", To: "bob", TS: gTS, Type: TypeMsg, Cid: "c-1",
				Data: json.RawMessage(`{"text":"hi bob"}`)}),
			entry(Entry{ID: gID(1), Inbox: "u/alice", Seq: 1, From: "alice", To: "bob", TS: gTS, Type: TypeMsg, Cid: "c-1",
				Data: json.RawMessage(`{"text":"hi bob"}`)}),
			// A plain-text publish (mosquitto_pub -m), without cid: the
			// server escapes <, > and & and keeps other characters.
			entry(Entry{ID: gID(2), Inbox: "u/bob", Seq: 3, From: "alice", To: "bob", TS: gTS + 1, Type: TypeMsg,
				Data: TextBody("5 > 3 & <b>ok</b> \"quoted\" ☀️ é\n")}),
			// A group message with a body beyond text.
			entry(Entry{ID: gID(3), Inbox: gInbox, Seq: 8, From: "bob", To: gGroup, TS: gTS + 2, Type: TypeMsg, Cid: "c-2",
				Data: json.RawMessage(`{"text":"photo","image":{"url":"https://example.com/p.jpg","w":640,"h":480}}`)}),
		},
		TypeReceipt: {
			// Direct messages: delivered (batched ids), then read.
			entry(Entry{ID: gID(10), Inbox: "u/alice", Seq: 2, From: "bob", To: "alice", TS: gTS + 10, Type: TypeReceipt,
				Data: ReceiptData("delivered", "bob", "u/bob", []string{gID(1), gID(2)})}),
			entry(Entry{ID: gID(11), Inbox: "u/alice", Seq: 3, From: "bob", To: "alice", TS: gTS + 11, Type: TypeReceipt,
				Data: ReceiptData("read", "bob", "u/bob", []string{gID(1)})}),
			// Group messages: aggregated, count of the of other members.
			entry(Entry{ID: gID(12), Inbox: "u/bob", Seq: 4, From: "", To: "bob", TS: gTS + 12, Type: TypeReceipt,
				Data: GroupReceiptData("delivered", gInbox, []string{gID(3)}, 2, 5)}),
			entry(Entry{ID: gID(13), Inbox: "u/bob", Seq: 5, From: "", To: "bob", TS: gTS + 13, Type: TypeReceipt,
				Data: GroupReceiptData("read", gInbox, []string{gID(3)}, 5, 5)}),
		},
		TypeError: {
			entry(Entry{ID: gID(20), Inbox: "u/alice", Seq: 4, From: "alice", To: "alice", TS: gTS + 20, Type: TypeError, Cid: "c-3",
				Data: ErrorData(CodeNotAuthorized, (&Error{Code: CodeNotAuthorized, Detail: "bob does not accept your messages"}).Error(), "u/bob")}),
			entry(Entry{ID: gID(21), Inbox: "u/alice", Seq: 5, From: "alice", To: "alice", TS: gTS + 21, Type: TypeError,
				Data: ErrorDataSuppressed(CodeNoInbox, CodeNoInbox.Reason(), "random/topic", 3)}),
		},
		TypeTyping: {
			// Live only: no id, seq 0.
			entry(Entry{Inbox: "u/bob", From: "alice", To: "bob", TS: gTS + 30, Type: TypeTyping}),
			entry(Entry{Inbox: gInbox, From: "bob", To: gGroup, TS: gTS + 31, Type: TypeTyping}),
		},
		TypeRead: {
			// The echo of a read marker to the reader's other devices: a
			// direct conversation in its own inbox, and a group.
			entry(Entry{ID: gID(40), Inbox: "u/bob", Seq: 6, From: "bob", To: "bob", TS: gTS + 40, Type: TypeRead,
				Data: ReadData("u/bob", "alice", 3)}),
			entry(Entry{ID: gID(41), Inbox: "u/bob", Seq: 7, From: "bob", To: "bob", TS: gTS + 41, Type: TypeRead,
				Data: ReadData(gInbox, "", 8)}),
		},
		TypeGroupCreated: {
			entry(Entry{ID: gID(50), Inbox: gInbox, Seq: 1, From: "alice", To: gGroup, TS: gTS + 50, Type: TypeGroupCreated,
				Data: GroupEventData("", "alice", "Trip")}),
		},
		TypeMemberAdded: {
			entry(Entry{ID: gID(51), Inbox: gInbox, Seq: 2, From: "alice", To: gGroup, TS: gTS + 51, Type: TypeMemberAdded,
				Data: GroupEventData("dave", "alice", "")}),
			// The notice in the added user's own inbox.
			entry(Entry{ID: gID(52), Inbox: "u/dave", Seq: 1, From: "alice", To: "dave", TS: gTS + 52, Type: TypeMemberAdded,
				Data: GroupNoticeData("dave", "alice", gInbox, "Trip")}),
		},
		TypeMemberRemoved: {
			// Left, removed by the owner, and the removed user's notice.
			entry(Entry{ID: gID(53), Inbox: gInbox, Seq: 3, From: "carol", To: gGroup, TS: gTS + 53, Type: TypeMemberRemoved,
				Data: GroupEventData("carol", "carol", "")}),
			entry(Entry{ID: gID(54), Inbox: gInbox, Seq: 4, From: "alice", To: gGroup, TS: gTS + 54, Type: TypeMemberRemoved,
				Data: GroupEventData("dave", "alice", "")}),
			entry(Entry{ID: gID(55), Inbox: "u/dave", Seq: 2, From: "alice", To: "dave", TS: gTS + 55, Type: TypeMemberRemoved,
				Data: GroupNoticeData("dave", "alice", gInbox, "Trip")}),
		},
		TypeRenamed: {
			entry(Entry{ID: gID(56), Inbox: gInbox, Seq: 5, From: "bob", To: gGroup, TS: gTS + 56, Type: TypeRenamed,
				Data: GroupEventData("", "bob", "Road trip")}),
		},
		TypeHistoryChanged: {
			entry(Entry{ID: gID(57), Inbox: gInbox, Seq: 6, From: "alice", To: gGroup, TS: gTS + 57, Type: TypeHistoryChanged,
				Data: GroupHistoryData("alice", "full")}),
		},
	}
}

// entryTypes reads the Type… constants of envelope.go: every one of them
// needs golden entries.
func entryTypes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "envelope.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, "Type") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, _ := strconv.Unquote(lit.Value)
				types = append(types, v)
			}
		}
	}
	sort.Strings(types)
	return types
}

func TestGoldenEntries(t *testing.T) {
	all := goldenEntries()
	types := entryTypes(t)
	if len(types) < 10 {
		t.Fatalf("found only %d entry types in envelope.go: %v", len(types), types)
	}
	for _, typ := range types {
		if len(all[typ]) == 0 {
			t.Errorf("entry type %q has no golden entries: add examples to goldenEntries", typ)
		}
	}
	for typ, es := range all {
		for i, e := range es {
			h, ok := PeekHeader(e)
			if !ok || h.Type != typ {
				t.Errorf("%s #%d: header %+v (ok %v)", typ, i, h, ok)
			}
			if !json.Valid(e) {
				t.Errorf("%s #%d: not JSON: %s", typ, i, e)
			}
		}
		checkGolden(t, "entries/"+typ+".json", array(es...))
	}
	// No file of a type that is gone.
	files, _ := filepath.Glob(filepath.Join(goldenDir, "entries", "*.json"))
	for _, f := range files {
		if typ := strings.TrimSuffix(filepath.Base(f), ".json"); all[typ] == nil {
			t.Errorf("%s: no such entry type any more: delete the file", f)
		}
	}
}

// TestGoldenPresence: what the server publishes (retained) on p/{user},
// and the items of GET /v1/presence.
func TestGoldenPresence(t *testing.T) {
	checkGolden(t, "presence.json", array(
		Presence{User: "alice", Status: StatusOnline, TS: gTS}.AppendJSON(nil),
		Presence{User: "alice", Status: StatusAway, TS: gTS + 60_000}.AppendJSON(nil),
		Presence{User: "alice", Status: StatusOffline, LastSeen: gTS + 120_000}.AppendJSON(nil),
		Presence{User: "dave", Status: StatusOffline}.AppendJSON(nil), // never seen
		Presence{User: "carol", Status: StatusHidden}.AppendJSON(nil),
	))
}

// TestGoldenSubmissions: what clients publish, as the SDK encodes it; each
// must parse to what the server acts on.
func TestGoldenSubmissions(t *testing.T) {
	cases := []struct {
		name    string
		payload string
		want    Submission
	}{
		{"msg", `{"cid":"c-1","body":{"text":"hi bob"}}`, Submission{Type: TypeMsg, Cid: "c-1", Body: json.RawMessage(`{"text":"hi bob"}`)}},
		{"typing", `{"type":"typing"}`, Submission{Type: TypeTyping}},
		{"read-direct", `{"type":"read","inbox":"u/bob","seq":57,"with":"alice"}`, Submission{Type: TypeRead, Inbox: "u/bob", Seq: 57, With: "alice"}},
		{"read-group", `{"type":"read","seq":12}`, Submission{Type: TypeRead, Seq: 12}},
	}
	for _, c := range cases {
		got, err := ParseSubmission([]byte(c.payload))
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: ParseSubmission(%s) = %+v, %v; want %+v", c.name, c.payload, got, err, c.want)
		}
		checkGolden(t, "submissions/"+c.name+".json", json.RawMessage(c.payload))
	}
	for _, status := range []string{StatusOnline, StatusAway} {
		p := `{"status":"` + status + `"}`
		if got, err := ParsePresenceUpdate([]byte(p)); err != nil || got != status {
			t.Errorf("ParsePresenceUpdate(%s) = %q, %v", p, got, err)
		}
		checkGolden(t, "submissions/presence-"+status+".json", json.RawMessage(p))
	}
}
