package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/parleychat/parley/protocol"
)

// Payloads as clients publish them (from the broker tests, the load tester
// and mosquitto_pub -m). They seed the fuzzers too.
var clientPayloads = []string{
	`hello`,
	`42`,
	`"x"`,
	`{"cid":"c-1","body":{"text":"hello"},"from":"mallory","seq":99,"id":"x"}`,
	`{"cid":"same","body":{"text":"once"}}`,
	`{"cid":"c-1","body":{}}`,
	`{"body":"text"}`,
	`{"cid":"` + strings.Repeat("c", 65) + `","body":{}}`,
	`{"type":"bogus"}`,
	`{"type":"typing"}`,
	`{"type":"read","inbox":"g/team","seq":42}`,
	`{"cid":"0001-0042","body":{"t":1764250000123456789,"text":"xxxxxxxxxxxxxxxx"}}`,
	"{ \"body\" : {\n\t\"text\" : \"a b\" } }",
	"\xff\xfe",
	" \n",
	`{"cid":"a\u0000b","body":{}}`,
	`{"cid":"\u001b[31m","body":{"text":"\u0000"}}`,
	`{"type":"read","inbox":"u/a\u0000","seq":1,"with":"b"}`,
}

func TestParseSubmission(t *testing.T) {
	cid64 := strings.Repeat("c", protocol.MaxCidLen)
	tests := map[string]struct {
		payload string
		want    protocol.Submission
		wantErr bool // always an *Error with CodeBadPayload
	}{
		// Anything that is not a JSON object is a plain-text message.
		"plain text":               {payload: `hello`, want: msg(`{"text":"hello"}`)},
		"text keeps its spaces":    {payload: "  hello world \n", want: msg(`{"text":"  hello world \n"}`)},
		"JSON number":              {payload: `42`, want: msg(`{"text":"42"}`)},
		"JSON string":              {payload: `"x"`, want: msg(`{"text":"\"x\""}`)},
		"JSON array":               {payload: `[1,2]`, want: msg(`{"text":"[1,2]"}`)},
		"JSON null":                {payload: `null`, want: msg(`{"text":"null"}`)},
		"unterminated object":      {payload: `{"body":{`, want: msg(`{"text":"{\"body\":{"}`)},
		"object then text":         {payload: `{"body":{}} and more`, want: msg(`{"text":"{\"body\":{}} and more"}`)},
		"two objects":              {payload: `{}{}`, want: msg(`{"text":"{}{}"}`)},
		"text with HTML and quote": {payload: `<b>"hi"</b> & bye`, want: msg(`{"text":"\u003cb\u003e\"hi\"\u003c/b\u003e \u0026 bye"}`)},
		"text with control char":   {payload: "a\x01b\tc", want: msg(`{"text":"a\u0001b\tc"}`)},
		"non-ASCII text":           {payload: "héllo\u2028wörld 🙂", want: msg("{\"text\":\"héllo\\u2028wörld 🙂\"}")},

		// Only JSON whitespace [RFC 8259 §2] is insignificant: other spaces
		// are text, and make what follows them no JSON object.
		"ideographic space":         {payload: "\u3000", want: msg("{\"text\":\"\u3000\"}")},
		"vertical tab":              {payload: "\v", want: msg(`{"text":"\u000b"}`)},
		"no-break space and object": {payload: "\u00a0{\"type\":\"typing\"}", want: msg("{\"text\":\"\u00a0{\\\"type\\\":\\\"typing\\\"}\"}")},
		"object and line separator": {payload: "{\"body\":{}}\u2028", want: msg(`{"text":"{\"body\":{}}\u2028"}`)},

		"invalid UTF-8 text":      {payload: "\xffhello", wantErr: true},
		"invalid UTF-8 in object": {payload: "{\"body\":{\"text\":\"\xc3\"}}", wantErr: true},
		"empty":                   {payload: "", wantErr: true},
		"whitespace only":         {payload: " \r\n\t", wantErr: true},

		// A JSON object must have the documented shape.
		"message":           {payload: `{"cid":"c-1","body":{"text":"hello"}}`, want: protocol.Submission{Type: protocol.TypeMsg, Cid: "c-1", Body: json.RawMessage(`{"text":"hello"}`)}},
		"explicit type msg": {payload: `{"type":"msg","body":{}}`, want: msg(`{}`)},
		"null type is msg":  {payload: `{"type":null,"body":{}}`, want: msg(`{}`)},
		"body compacted": {
			payload: "{ \"body\" : {\n \"text\" : \"a  b\" ,\n \"n\" : [ 1 , 2 ] , \"o\" : { } } }",
			want:    msg(`{"text":"a  b","n":[1,2],"o":{}}`),
		},
		"whitespace around object": {payload: "\r\n\t {\"body\":{\"a\":1}} \n", want: msg(`{"a":1}`)},
		"body escapes kept":        {payload: `{"body":{"text":"\u00e9\n\""}}`, want: msg(`{"text":"\u00e9\n\""}`)},
		"cid of 64":                {payload: `{"cid":"` + cid64 + `","body":{}}`, want: protocol.Submission{Type: protocol.TypeMsg, Cid: cid64, Body: json.RawMessage(`{}`)}},
		"null cid is no cid":       {payload: `{"cid":null,"body":{}}`, want: msg(`{}`)},
		"unknown fields ignored":   {payload: `{"body":{},"extra":[1,{"a":2}]}`, want: msg(`{}`)},
		"spoofed fields ignored": {
			payload: `{"cid":"c-1","body":{"text":"hi"},"from":"mallory","to":"eve","id":"x","ts":1,"seq":99,"inbox":"u/eve"}`,
			want:    protocol.Submission{Type: protocol.TypeMsg, Cid: "c-1", Body: json.RawMessage(`{"text":"hi"}`)},
		},

		"cid of 65":          {payload: `{"cid":"` + cid64 + `x","body":{}}`, wantErr: true},
		"empty cid":          {payload: `{"cid":"","body":{}}`, wantErr: true},
		"cid not a string":   {payload: `{"cid":5,"body":{}}`, wantErr: true},
		"type not a string":  {payload: `{"type":1,"body":{}}`, wantErr: true},
		"empty object":       {payload: `{}`, wantErr: true},
		"no body":            {payload: `{"cid":"c-1"}`, wantErr: true},
		"text but no body":   {payload: `{"text":"hello"}`, wantErr: true},
		"body a string":      {payload: `{"body":"hi"}`, wantErr: true},
		"body null":          {payload: `{"body":null}`, wantErr: true},
		"body an array":      {payload: `{"body":[1]}`, wantErr: true},
		"body a number":      {payload: `{"body":1}`, wantErr: true},
		"unknown type":       {payload: `{"type":"bogus"}`, wantErr: true},
		"empty type":         {payload: `{"type":"","body":{}}`, wantErr: true},
		"type in upper case": {payload: `{"type":"MSG","body":{}}`, wantErr: true},

		"typing":         {payload: `{"type":"typing"}`, want: protocol.Submission{Type: protocol.TypeTyping}},
		"typing and cid": {payload: `{"type":"typing","cid":"c-9"}`, want: protocol.Submission{Type: protocol.TypeTyping, Cid: "c-9"}},
		"typing ignores body, inbox and seq": {
			payload: `{"type":"typing","body":"x","inbox":"u/eve","seq":5}`,
			want:    protocol.Submission{Type: protocol.TypeTyping},
		},

		"read":              {payload: `{"type":"read","inbox":"g/team","seq":42}`, want: protocol.Submission{Type: protocol.TypeRead, Inbox: "g/team", Seq: 42}},
		"read of topic":     {payload: `{"type":"read","seq":7}`, want: protocol.Submission{Type: protocol.TypeRead, Seq: 7}},
		"read of seq 0":     {payload: `{"type":"read","seq":0}`, want: protocol.Submission{Type: protocol.TypeRead}},
		"read of max seq":   {payload: `{"type":"read","seq":9223372036854775807}`, want: protocol.Submission{Type: protocol.TypeRead, Seq: math.MaxInt64}},
		"read ignores body": {payload: `{"type":"read","seq":1,"body":{"a":1}}`, want: protocol.Submission{Type: protocol.TypeRead, Seq: 1}},
		"read without seq":  {payload: `{"type":"read","inbox":"g/team"}`, wantErr: true},
		"read of null seq":  {payload: `{"type":"read","seq":null}`, wantErr: true},
		"read of seq -1":    {payload: `{"type":"read","seq":-1}`, wantErr: true},
		"fractional seq":    {payload: `{"type":"read","seq":1.5}`, wantErr: true},
		"seq as string":     {payload: `{"type":"read","seq":"1"}`, wantErr: true},
		"seq overflowing":   {payload: `{"type":"read","seq":9223372036854775808}`, wantErr: true},
		"read, cid of 65":   {payload: `{"type":"read","seq":1,"cid":"` + cid64 + `x"}`, wantErr: true},
		"inbox not string":  {payload: `{"type":"read","seq":1,"inbox":3}`, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := protocol.ParseSubmission([]byte(tc.payload))
			if tc.wantErr {
				wantBadPayload(t, err)
				if !submissionEqual(got, protocol.Submission{}) {
					t.Errorf("ParseSubmission(%q) = %s with an error, want the zero Submission", tc.payload, fmtSubmission(got))
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSubmission(%q): %v", tc.payload, err)
			}
			if !submissionEqual(got, tc.want) {
				t.Fatalf("ParseSubmission(%q)\n got %s\nwant %s", tc.payload, fmtSubmission(got), fmtSubmission(tc.want))
			}
			if got.Type == protocol.TypeMsg {
				checkCompactObject(t, got.Body)
			}
		})
	}
}

// TestParseSubmissionText checks that plain text survives as the body's
// "text", whatever it contains.
func TestParseSubmissionText(t *testing.T) {
	for _, text := range []string{"hello", "42", `"x"`, `[{"body":{}}]`, " a\n", "\x00", "\u2028\u2029", `</script>&amp;`, "\U0010FFFF"} {
		sub, err := protocol.ParseSubmission([]byte(text))
		if err != nil {
			t.Errorf("ParseSubmission(%q): %v", text, err)
			continue
		}
		if got := textOf(t, sub.Body); got != text {
			t.Errorf("ParseSubmission(%q): body text = %q", text, got)
		}
	}
}

func msg(body string) protocol.Submission {
	return protocol.Submission{Type: protocol.TypeMsg, Body: json.RawMessage(body)}
}

func submissionEqual(a, b protocol.Submission) bool {
	return a.Type == b.Type && a.Cid == b.Cid && bytes.Equal(a.Body, b.Body) && a.Inbox == b.Inbox && a.Seq == b.Seq
}

func fmtSubmission(s protocol.Submission) string {
	return "{Type:" + strconv.Quote(s.Type) + " Cid:" + strconv.Quote(s.Cid) + " Body:" + strconv.Quote(string(s.Body)) +
		" Inbox:" + strconv.Quote(s.Inbox) + " Seq:" + strconv.FormatInt(s.Seq, 10) + "}"
}

func wantBadPayload(tb testing.TB, err error) {
	tb.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		tb.Fatalf("err = %v (%T), want a *protocol.Error", err, err)
	}
	if pe.Code != protocol.CodeBadPayload {
		tb.Fatalf("err code = %#x (%v), want CodeBadPayload", byte(pe.Code), err)
	}
}

// checkCompactObject fails unless b is a JSON object without insignificant
// whitespace.
func checkCompactObject(tb testing.TB, b []byte) {
	tb.Helper()
	if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		tb.Fatalf("body %q is not a JSON object", b)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil || !bytes.Equal(buf.Bytes(), b) {
		tb.Fatalf("body %q is not compact (compact form %q)", b, buf.Bytes())
	}
}

// textOf returns the "text" of a body that must be exactly {"text": string}.
func textOf(tb testing.TB, body []byte) string {
	tb.Helper()
	m := decodeObject(tb, body)
	if len(m) != 1 {
		tb.Fatalf("body %q: want only a text member", body)
	}
	return stringMember(tb, m, "text")
}

// decodeObject decodes a JSON object with encoding/json, failing on invalid
// JSON and on duplicate members.
func decodeObject(tb testing.TB, b []byte) map[string]json.RawMessage {
	tb.Helper()
	if !json.Valid(b) {
		tb.Fatalf("not valid JSON: %q", b)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		tb.Fatalf("not a JSON object: %q", b)
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			tb.Fatalf("decode %q: %v", b, err)
		}
		key := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			tb.Fatalf("decode %q: %v", b, err)
		}
		if _, dup := m[key]; dup {
			tb.Fatalf("duplicate member %q in %q", key, b)
		}
		m[key] = v
	}
	return m
}

func stringMember(tb testing.TB, m map[string]json.RawMessage, key string) string {
	tb.Helper()
	var s string
	if err := json.Unmarshal(m[key], &s); err != nil {
		tb.Fatalf("member %q = %s: %v", key, m[key], err)
	}
	return s
}

func intMember(tb testing.TB, m map[string]json.RawMessage, key string) int64 {
	tb.Helper()
	var n int64
	if err := json.Unmarshal(m[key], &n); err != nil {
		tb.Fatalf("member %q = %s: %v", key, m[key], err)
	}
	return n
}

// coerced is s as encoding/json encodes and decodes it: each byte of invalid
// UTF-8 becomes U+FFFD. It is the independent oracle of what a client decodes.
func coerced(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

// escapeFree reports whether s is a JSON string body that needs no escaping
// by Parley's encoder (which escapes <, >, & and U+2028/U+2029 as
// encoding/json does).
func escapeFree(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || strings.ContainsRune(`"\<>&`, r) || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

// Entries as the server stores them. They seed the fuzzers too.
var (
	msgEntry = protocol.Entry{ID: "0190a0c4-7b3e-7c1a-9e2f-1a2b3c4d5e6f", Inbox: "u/bob", Seq: 42, From: "alice", To: "bob",
		TS: 1764250000123, Type: protocol.TypeMsg, Cid: "c-1", Data: json.RawMessage(`{"text":"hi"}`)}
	receiptEntry = protocol.Entry{ID: "0190a0c4-0000-7000-8000-000000000001", Inbox: "u/alice", Seq: 7, From: "bob", To: "alice",
		TS: 1764250000456, Type: protocol.TypeReceipt, Data: protocol.ReceiptData("delivered", "bob", "u/bob", []string{"m1", "m2"})}
	errorEntry = protocol.Entry{ID: "e-1", Inbox: "u/alice", Seq: 3, From: "alice", To: "alice", TS: 5, Type: protocol.TypeError,
		Cid: "c-7", Data: protocol.ErrorData(protocol.CodeNotAuthorized, "not authorized", "g/x")}
	typingEntry = protocol.Entry{Inbox: "g/team", From: "alice", To: "team", TS: 9, Type: protocol.TypeTyping}
)

func TestEntryAppendJSON(t *testing.T) {
	tests := map[string]struct {
		entry protocol.Entry
		want  string
	}{
		"message": {msgEntry,
			`{"id":"0190a0c4-7b3e-7c1a-9e2f-1a2b3c4d5e6f","inbox":"u/bob","seq":42,"from":"alice","to":"bob","ts":1764250000123,"type":"msg","cid":"c-1","body":{"text":"hi"}}`},
		"message without cid or body": {protocol.Entry{ID: "m", Inbox: "g/team", Seq: 1, From: "a", To: "team", TS: 2, Type: protocol.TypeMsg},
			`{"id":"m","inbox":"g/team","seq":1,"from":"a","to":"team","ts":2,"type":"msg","body":{}}`},
		"message body with spaces around": {protocol.Entry{ID: "m", Type: protocol.TypeMsg, Data: json.RawMessage("\n {\"a\":1} \t")},
			`{"id":"m","inbox":"","seq":0,"from":"","to":"","ts":0,"type":"msg","body":{"a":1}}`},
		"receipt": {receiptEntry,
			`{"id":"0190a0c4-0000-7000-8000-000000000001","inbox":"u/alice","seq":7,"from":"bob","to":"alice","ts":1764250000456,"type":"receipt","status":"delivered","by":"bob","for":"u/bob","ids":["m1","m2"]}`},
		"error": {errorEntry,
			`{"id":"e-1","inbox":"u/alice","seq":3,"from":"alice","to":"alice","ts":5,"type":"error","cid":"c-7","code":135,"reason":"not authorized","topic":"g/x"}`},
		"typing": {typingEntry,
			`{"id":"","inbox":"g/team","seq":0,"from":"alice","to":"team","ts":9,"type":"typing"}`},
		"event with empty data": {protocol.Entry{ID: "x", Type: protocol.TypeReceipt, Data: json.RawMessage(`{}`)},
			`{"id":"x","inbox":"","seq":0,"from":"","to":"","ts":0,"type":"receipt"}`},
		"event with blank data": {protocol.Entry{ID: "x", Type: protocol.TypeReceipt, Data: json.RawMessage(" { \n} ")},
			`{"id":"x","inbox":"","seq":0,"from":"","to":"","ts":0,"type":"receipt"}`},
		"event with data not an object": {protocol.Entry{ID: "x", Type: protocol.TypeReceipt, Data: json.RawMessage(`[1]`)},
			`{"id":"x","inbox":"","seq":0,"from":"","to":"","ts":0,"type":"receipt"}`},
		"extreme numbers": {protocol.Entry{ID: "x", Seq: math.MaxInt64, TS: math.MinInt64, Type: protocol.TypeTyping},
			`{"id":"x","inbox":"","seq":9223372036854775807,"from":"","to":"","ts":-9223372036854775808,"type":"typing"}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := tc.entry.AppendJSON(nil)
			if string(got) != tc.want {
				t.Fatalf("AppendJSON\n got %s\nwant %s", got, tc.want)
			}
			decodeObject(t, got)
		})
	}
}

func TestEntryAppendJSONAppends(t *testing.T) {
	want := string(msgEntry.AppendJSON(nil))
	buf := make([]byte, 0, 4)
	buf = append(buf, "xy"...)
	if got := string(msgEntry.AppendJSON(buf)); got != "xy"+want {
		t.Errorf("AppendJSON(%q) = %q, want the prefix kept", "xy", got)
	}
	if b, err := msgEntry.MarshalJSON(); err != nil || string(b) != want {
		t.Errorf("MarshalJSON() = %s, %v; want %s", b, err, want)
	}
	if b, err := json.Marshal(receiptEntry); err != nil || string(b) != string(receiptEntry.AppendJSON(nil)) {
		t.Errorf("json.Marshal(receipt) = %s, %v; want the AppendJSON form", b, err)
	}
}

// TestEntryAppendJSONEscaping puts the same string in every string field and
// checks the exact escape and what encoding/json decodes.
func TestEntryAppendJSONEscaping(t *testing.T) {
	tests := map[string]struct {
		s, want string // want: the JSON string, quotes included
	}{
		"plain":                    {`abc`, `"abc"`},
		"quote and backslash":      {`a"b\c`, `"a\"b\\c"`},
		"newline, return and tab":  {"a\nb\rc\td", `"a\nb\rc\td"`},
		"other control characters": {"\x00\x01\x08\x0c\x1b\x1f", `"\u0000\u0001\u0008\u000c\u001b\u001f"`},
		"DEL kept":                 {"a\x7fb", "\"a\x7fb\""},
		"HTML":                     {`<a href="x">&amp;</a>`, `"\u003ca href=\"x\"\u003e\u0026amp;\u003c/a\u003e"`},
		"line separators":          {"a\u2028b\u2029c", `"a\u2028b\u2029c"`},
		"non-ASCII kept":           {"héllo 世界 🙂", `"héllo 世界 🙂"`},
		"replacement char kept":    {"\uFFFD", "\"\uFFFD\""},
		"invalid byte":             {"a\xffb", `"a\ufffdb"`},
		"truncated sequence":       {"a\xe2\x82", `"a\ufffd\ufffd"`},
		"surrogate half":           {"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},
		"overlong encoding":        {"\xc0\xaf", `"\ufffd\ufffd"`},
		"escape then invalid":      {"\"\xff<", `"\"\ufffd\u003c"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := protocol.Entry{ID: tc.s, Inbox: tc.s, Seq: 1, From: tc.s, To: tc.s, TS: 2, Type: tc.s, Cid: tc.s,
				Data: protocol.TextBody(tc.s)}
			w := tc.want
			want := `{"id":` + w + `,"inbox":` + w + `,"seq":1,"from":` + w + `,"to":` + w + `,"ts":2,"type":` + w +
				`,"cid":` + w + `,"text":` + w + `}`
			got := e.AppendJSON(nil)
			if string(got) != want {
				t.Fatalf("AppendJSON\n got %s\nwant %s", got, want)
			}
			m := decodeObject(t, got)
			for _, key := range []string{"id", "inbox", "from", "to", "type", "cid", "text"} {
				if got := stringMember(t, m, key); got != coerced(tc.s) {
					t.Errorf("%s decodes to %q, want %q", key, got, coerced(tc.s))
				}
			}
		})
	}
}

func TestDataHelpers(t *testing.T) {
	tests := map[string]struct {
		got  []byte
		want string
	}{
		"error":                     {protocol.ErrorData(protocol.CodeNotAuthorized, "not authorized", "g/x"), `{"code":135,"reason":"not authorized","topic":"g/x"}`},
		"error without topic":       {protocol.ErrorData(protocol.CodeBadPayload, "payload format invalid", ""), `{"code":153,"reason":"payload format invalid"}`},
		"error with escaped reason": {protocol.ErrorData(protocol.CodeBadPayload, "body \"must\" be <obj>\n", "u/\xff"), `{"code":153,"reason":"body \"must\" be \u003cobj\u003e\n","topic":"u/\ufffd"}`},
		"receipt":                   {protocol.ReceiptData("delivered", "bob", "u/bob", []string{"m1", "m2"}), `{"status":"delivered","by":"bob","for":"u/bob","ids":["m1","m2"]}`},
		"receipt without ids":       {protocol.ReceiptData("read", "bob", "", nil), `{"status":"read","by":"bob","ids":[]}`},
		"receipt with odd ids":      {protocol.ReceiptData("read", "b\"ob", "", []string{"\x00", "&"}), `{"status":"read","by":"b\"ob","ids":["\u0000","\u0026"]}`},
		"history changed":           {protocol.GroupHistoryData("alice", "full"), `{"by":"alice","history":"full"}`},
		"text":                      {protocol.TextBody("hi"), `{"text":"hi"}`},
		"empty text":                {protocol.TextBody(""), `{"text":""}`},
		"escaped text":              {protocol.TextBody("a\"\xff\u2028"), `{"text":"a\"\ufffd\u2028"}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if string(tc.got) != tc.want {
				t.Fatalf("got %s, want %s", tc.got, tc.want)
			}
			decodeObject(t, tc.got)
		})
	}
}

func TestDataHelpersDecode(t *testing.T) {
	m := decodeObject(t, protocol.ErrorData(protocol.CodeTooLarge, "payload too large", "u/bob"))
	if intMember(t, m, "code") != int64(protocol.CodeTooLarge) || stringMember(t, m, "reason") != "payload too large" ||
		stringMember(t, m, "topic") != "u/bob" {
		t.Errorf("ErrorData decodes to %s", m)
	}
	var r struct {
		Status string   `json:"status"`
		By     string   `json:"by"`
		For    string   `json:"for"`
		IDs    []string `json:"ids"`
	}
	ids := []string{"a", "<b>", "c\xff"}
	if err := json.Unmarshal(protocol.ReceiptData("delivered", "bob", "g/team", ids), &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != "delivered" || r.By != "bob" || r.For != "g/team" || len(r.IDs) != 3 ||
		r.IDs[0] != "a" || r.IDs[1] != "<b>" || r.IDs[2] != coerced("c\xff") {
		t.Errorf("ReceiptData decodes to %+v", r)
	}
}

func headerOf(e protocol.Entry) protocol.Header {
	return protocol.Header{ID: e.ID, Inbox: e.Inbox, Seq: e.Seq, From: e.From, To: e.To, Type: e.Type}
}

func TestPeekHeader(t *testing.T) {
	tests := map[string]protocol.Entry{
		"message":       msgEntry,
		"receipt":       receiptEntry,
		"error":         errorEntry,
		"typing":        typingEntry,
		"empty strings": {},
		"extremes":      {ID: "x", Seq: math.MinInt64, TS: math.MaxInt64, Type: "t"},
		"non-ASCII ids": {ID: "héllo", Inbox: "u/ü", Seq: 1, From: "世界", To: "🙂", Type: protocol.TypeMsg, Data: json.RawMessage(`{"a":"\""}`)},
		"slashes":       {ID: "a/b", Inbox: "u/a/b", Seq: 2, From: "/", To: "//", Type: "x/y"},
	}
	for name, e := range tests {
		t.Run(name, func(t *testing.T) {
			h, ok := protocol.PeekHeader(e.AppendJSON(nil))
			if !ok || h != headerOf(e) {
				t.Errorf("PeekHeader(AppendJSON) = %+v, %v; want %+v, true", h, ok, headerOf(e))
			}
		})
	}
}

// TestPeekHeaderEscaped checks that a header string that needed escaping is
// refused rather than misread: PeekHeader only reads escape-free strings.
func TestPeekHeaderEscaped(t *testing.T) {
	tests := map[string]protocol.Entry{
		"quote in id":          {ID: `a"b`, Type: protocol.TypeMsg},
		"backslash in inbox":   {Inbox: `u\b`, Type: protocol.TypeMsg},
		"HTML in from":         {From: "<b>", Type: protocol.TypeMsg},
		"newline in to":        {To: "a\nb", Type: protocol.TypeMsg},
		"invalid UTF-8 type":   {Type: "msg\xff"},
		"line separator in id": {ID: "a\u2028", Type: protocol.TypeMsg},
	}
	for name, e := range tests {
		t.Run(name, func(t *testing.T) {
			if h, ok := protocol.PeekHeader(e.AppendJSON(nil)); ok {
				t.Errorf("PeekHeader = %+v, true; want false", h)
			}
		})
	}
}

func TestPeekHeaderRejects(t *testing.T) {
	valid := string(msgEntry.AppendJSON(nil))
	tests := map[string]string{
		"empty":                 "",
		"empty object":          `{}`,
		"null":                  `null`,
		"plain text":            `hello`,
		"client submission":     `{"cid":"c-1","body":{"text":"hello"}}`,
		"leading space":         " " + valid,
		"space after colon":     `{"id": "m","inbox":"u/bob","seq":1,"from":"a","to":"b","ts":1,"type":"msg"}`,
		"reordered members":     `{"inbox":"u/bob","id":"m","seq":1,"from":"a","to":"b","ts":1,"type":"msg"}`,
		"missing member":        `{"id":"m","inbox":"u/bob","seq":1,"to":"b","ts":1,"type":"msg"}`,
		"id not a string":       `{"id":1,"inbox":"u/bob","seq":1,"from":"a","to":"b","ts":1,"type":"msg"}`,
		"escaped id":            `{"id":"m\"","inbox":"u/bob","seq":1,"from":"a","to":"b","ts":1,"type":"msg"}`,
		"escaped type":          `{"id":"m","inbox":"u/bob","seq":1,"from":"a","to":"b","ts":1,"type":"m\u0073g"}`,
		"seq a string":          `{"id":"m","inbox":"u/bob","seq":"1","from":"a","to":"b","ts":1,"type":"msg"}`,
		"seq empty":             `{"id":"m","inbox":"u/bob","seq":,"from":"a","to":"b","ts":1,"type":"msg"}`,
		"seq a lone minus":      `{"id":"m","inbox":"u/bob","seq":-,"from":"a","to":"b","ts":1,"type":"msg"}`,
		"seq with plus sign":    `{"id":"m","inbox":"u/bob","seq":+1,"from":"a","to":"b","ts":1,"type":"msg"}`,
		"seq fractional":        `{"id":"m","inbox":"u/bob","seq":1.5,"from":"a","to":"b","ts":1,"type":"msg"}`,
		"seq with exponent":     `{"id":"m","inbox":"u/bob","seq":1e3,"from":"a","to":"b","ts":1,"type":"msg"}`,
		"seq overflowing":       `{"id":"m","inbox":"u/bob","seq":9223372036854775808,"from":"a","to":"b","ts":1,"type":"msg"}`,
		"ts missing":            `{"id":"m","inbox":"u/bob","seq":1,"from":"a","to":"b","type":"msg"}`,
		"unterminated id":       `{"id":"m`,
		"unterminated type":     `{"id":"m","inbox":"u/bob","seq":1,"from":"a","to":"b","ts":1,"type":"msg`,
		"binary":                "\x00\xff{\"id\":",
		"only the opening":      `{"id":`,
		"quote at the very end": `{"id":"`,
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			if h, ok := protocol.PeekHeader([]byte(p)); ok {
				t.Errorf("PeekHeader(%q) = %+v, true; want false", p, h)
			}
		})
	}
}

// TestPeekHeaderTruncated cuts an entry at every byte: PeekHeader accepts it
// only once the whole header, up to the type, is there, and never panics.
func TestPeekHeaderTruncated(t *testing.T) {
	p := receiptEntry.AppendJSON(nil)
	end := bytes.Index(p, []byte(`"receipt"`)) + len(`"receipt"`)
	for n := 0; n <= len(p); n++ {
		h, ok := protocol.PeekHeader(p[:n])
		if ok != (n >= end) {
			t.Fatalf("PeekHeader(%q) ok = %v, want %v", p[:n], ok, n >= end)
		}
		if ok && h != headerOf(receiptEntry) {
			t.Fatalf("PeekHeader(%q) = %+v, want %+v", p[:n], h, headerOf(receiptEntry))
		}
	}
}

// isJSONObject reports whether p is, by RFC 8259, one JSON object.
func isJSONObject(p []byte) bool {
	t := bytes.TrimLeft(p, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(p)
}

func FuzzParseSubmission(f *testing.F) {
	for _, p := range clientPayloads {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		sub, err := protocol.ParseSubmission(p)
		if err != nil {
			wantBadPayload(t, err)
			if !submissionEqual(sub, protocol.Submission{}) {
				t.Fatalf("ParseSubmission(%q) = %s with an error", p, fmtSubmission(sub))
			}
			if utf8.Valid(p) && len(bytes.Trim(p, " \t\r\n")) > 0 && !isJSONObject(p) {
				t.Fatalf("ParseSubmission(%q): %v; want it taken as text", p, err)
			}
			return
		}
		if !utf8.Valid(p) {
			t.Fatalf("ParseSubmission(%q) accepted invalid UTF-8", p)
		}
		if sub.Cid != "" && len(sub.Cid) > protocol.MaxCidLen {
			t.Fatalf("ParseSubmission(%q): cid of %d bytes", p, len(sub.Cid))
		}
		checkStorable(t, p, sub)
		switch sub.Type {
		case protocol.TypeMsg:
			checkCompactObject(t, sub.Body)
			if !isJSONObject(p) {
				if got := textOf(t, sub.Body); got != string(p) || sub.Cid != "" {
					t.Fatalf("ParseSubmission(%q): text %q, cid %q; want the payload as text", p, got, sub.Cid)
				}
			}
		case protocol.TypeTyping, protocol.TypeRead:
			if !isJSONObject(p) || sub.Body != nil {
				t.Fatalf("ParseSubmission(%q) = %s", p, fmtSubmission(sub))
			}
			if sub.Seq < 0 || (sub.Type == protocol.TypeTyping && (sub.Seq != 0 || sub.Inbox != "")) {
				t.Fatalf("ParseSubmission(%q) = %s", p, fmtSubmission(sub))
			}
		default:
			t.Fatalf("ParseSubmission(%q): type %q", p, sub.Type)
		}
	})
}

// checkStorable fails unless every store can hold what an accepted
// submission puts in its columns exactly: text without NUL or control
// characters, valid UTF-8 (Postgres text refuses NUL, SQLSTATE 22021, and
// one such row used to fail a whole group-commit batch), a body of JSON
// with no raw control bytes.
func checkStorable(t *testing.T, p []byte, sub protocol.Submission) {
	t.Helper()
	if sub.Cid != "" && !protocol.ValidCid(sub.Cid) {
		t.Fatalf("ParseSubmission(%q) accepted cid %q, which is not printable", p, sub.Cid)
	}
	for _, text := range []string{sub.Cid, sub.Inbox, sub.With, sub.Type} {
		if !utf8.ValidString(text) || strings.IndexByte(text, 0) >= 0 {
			t.Fatalf("ParseSubmission(%q) = %s: %q cannot be stored as text", p, fmtSubmission(sub), text)
		}
	}
	if sub.Body != nil {
		if !utf8.Valid(sub.Body) || !json.Valid(sub.Body) {
			t.Fatalf("ParseSubmission(%q): body %q is not valid UTF-8 JSON", p, sub.Body)
		}
		for _, c := range sub.Body {
			if c < 0x20 {
				t.Fatalf("ParseSubmission(%q): body %q has a raw control byte %#x", p, sub.Body, c)
			}
		}
	}
}

func FuzzAppendJSON(f *testing.F) {
	for _, e := range []protocol.Entry{msgEntry, receiptEntry, errorEntry, typingEntry} {
		f.Add(e.ID, e.Inbox, e.From, e.To, e.Type, e.Cid, "hi", e.Seq, e.TS)
	}
	f.Add(`a"b\c`, "u/\xff", "<b>&", "\u2028", "msg", "\x00", "\xed\xa0\x80", int64(-1), int64(math.MinInt64))
	f.Fuzz(func(t *testing.T, id, inbox, from, to, typ, cid, text string, seq, ts int64) {
		e := protocol.Entry{ID: id, Inbox: inbox, Seq: seq, From: from, To: to, TS: ts, Type: typ, Cid: cid,
			Data: protocol.TextBody(text)}
		p := e.AppendJSON(nil)
		m := decodeObject(t, p)
		want := map[string]string{"id": id, "inbox": inbox, "from": from, "to": to, "type": typ}
		if cid != "" {
			want["cid"] = cid
		}
		if typ != protocol.TypeMsg {
			want["text"] = text // an event's data is inlined
		}
		for key, s := range want {
			if got := stringMember(t, m, key); got != coerced(s) {
				t.Fatalf("%s = %q decodes to %q, want %q", key, s, got, coerced(s))
			}
		}
		if intMember(t, m, "seq") != seq || intMember(t, m, "ts") != ts {
			t.Fatalf("seq, ts decode to %s, %s; want %d, %d", m["seq"], m["ts"], seq, ts)
		}
		wantLen := len(want) + 2
		if typ == protocol.TypeMsg {
			wantLen++
			if got := textOf(t, m["body"]); got != coerced(text) {
				t.Fatalf("body text %q decodes to %q", text, got)
			}
		}
		if len(m) != wantLen {
			t.Fatalf("%s: %d members, want %d", p, len(m), wantLen)
		}

		h, ok := protocol.PeekHeader(p)
		plain := escapeFree(id) && escapeFree(inbox) && escapeFree(from) && escapeFree(to) && escapeFree(typ)
		if ok != plain || (ok && h != headerOf(e)) {
			t.Fatalf("PeekHeader(%s) = %+v, %v; want %+v, %v", p, h, ok, headerOf(e), plain)
		}
	})
}

func FuzzPeekHeader(f *testing.F) {
	for _, e := range []protocol.Entry{msgEntry, receiptEntry, errorEntry, typingEntry} {
		p := e.AppendJSON(nil)
		f.Add(p, e.ID, e.Seq)
		f.Add(p[:len(p)/2], e.From, e.TS)
	}
	for _, p := range clientPayloads {
		f.Add([]byte(p), p, int64(0))
	}
	f.Fuzz(func(t *testing.T, p []byte, id string, seq int64) {
		h, ok := protocol.PeekHeader(p)
		if ok {
			for _, s := range []string{h.ID, h.Inbox, h.From, h.To, h.Type} {
				if strings.ContainsAny(s, `"\`) {
					t.Fatalf("PeekHeader(%q) = %+v: a string with a quote or backslash", p, h)
				}
			}
			prefix := `{"id":"` + h.ID + `","inbox":"` + h.Inbox + `","seq":`
			if !bytes.HasPrefix(p, []byte(prefix)) || !bytes.Contains(p, []byte(`,"from":"`+h.From+`","to":"`+h.To+`","ts":`)) ||
				!bytes.Contains(p, []byte(`,"type":"`+h.Type+`"`)) {
				t.Fatalf("PeekHeader(%q) = %+v: not what the payload says", p, h)
			}
		}

		e := protocol.Entry{ID: id, Inbox: "u/" + id, Seq: seq, From: id, To: id, TS: seq, Type: protocol.TypeMsg,
			Cid: id, Data: protocol.TextBody(id)}
		h, ok = protocol.PeekHeader(e.AppendJSON(nil))
		if ok != escapeFree(id) || (ok && h != headerOf(e)) {
			t.Fatalf("PeekHeader(AppendJSON(%+v)) = %+v, %v; want %+v, %v", e, h, ok, headerOf(e), escapeFree(id))
		}
	})
}
