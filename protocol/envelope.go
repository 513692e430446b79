package protocol

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Entry types. Every entry stored in an inbox has one.
const (
	TypeMsg     = "msg"     // a chat message; its Data is the body object
	TypeReceipt = "receipt" // delivered or read receipt
	TypeError   = "error"   // a refused publish, reported to a 3.1.1 client
	TypeTyping  = "typing"  // live only: never stored, no seq
	TypeRead    = "read"    // a read marker published by a client

	// Group events, stored in the group's inbox; Data holds "user" (the
	// member concerned), "by" (who did it), for renames "name", and for
	// history changes "history" (what members added from then on read:
	// "join" or "full").
	TypeGroupCreated   = "group_created"
	TypeMemberAdded    = "member_added"
	TypeMemberRemoved  = "member_removed"
	TypeRenamed        = "renamed"
	TypeHistoryChanged = "history_changed"
)

// MaxCidLen is the longest client-chosen message id, in bytes.
const MaxCidLen = 64

// Printable reports whether s is valid UTF-8 made of printable characters
// only: letters, marks, numbers, punctuation, symbols and spaces (Unicode's
// graphic characters), so no control characters (NUL among them), no
// format characters and no line or paragraph separators. Whatever a client
// names that the server stores as text (a cid, a client id) is held to it:
// Postgres text cannot hold NUL (SQLSTATE 22021), and a client id or cid
// must read back exactly as it was written.
func Printable(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || !unicode.IsGraphic(r) {
			return false
		}
		i += size
	}
	return true
}

// ValidCid reports whether s may be a cid: 1 to MaxCidLen bytes, Printable.
func ValidCid(s string) bool { return len(s) > 0 && len(s) <= MaxCidLen && Printable(s) }

// Entry is what the server delivers to an inbox's subscribers: a message or an
// event, stamped by the server. Its JSON form is
//
//	{"id":"…","inbox":"u/bob","seq":42,"from":"alice","to":"bob","ts":1764250000123,
//	 "type":"msg","cid":"c-1","body":{…}}
//
// For type "msg" Data is the body object, encoded under "body". For every other
// type Data is an object whose members are the type's own fields, encoded at the
// top level next to the header (for a receipt: "status", "ids", "by").
type Entry struct {
	ID    string          // server-assigned message id (UUID); shared by the copies of one message
	Inbox string          // the inbox topic this copy is stored in
	Seq   int64           // gapless position in Inbox, from 1; 0 for live-only entries
	From  string          // sender user id, set by the server
	To    string          // recipient: a user id for u/ inboxes, a group id for g/
	TS    int64           // server time, Unix milliseconds
	Type  string          // TypeMsg, TypeReceipt, …
	Cid   string          // the sender's own id of the message, if it gave one
	Data  json.RawMessage // see the type comment
}

// AppendJSON appends the entry's JSON form to b. The header fields come first
// and in a fixed order, which PeekHeader relies on.
func (e *Entry) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"inbox":`...)
	b = appendString(b, e.Inbox)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"from":`...)
	b = appendString(b, e.From)
	b = append(b, `,"to":`...)
	b = appendString(b, e.To)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, e.TS, 10)
	b = append(b, `,"type":`...)
	b = appendString(b, e.Type)
	if e.Cid != "" {
		b = append(b, `,"cid":`...)
		b = appendString(b, e.Cid)
	}
	data := bytes.TrimSpace(e.Data)
	if e.Type == TypeMsg {
		if len(data) == 0 {
			data = []byte("{}")
		}
		b = append(b, `,"body":`...)
		b = append(b, data...)
	} else if len(data) > 2 && data[0] == '{' {
		inner := bytes.TrimSpace(data[1 : len(data)-1])
		if len(inner) > 0 {
			b = append(b, ',')
			b = append(b, inner...)
		}
	}
	return append(b, '}')
}

// MarshalJSON implements json.Marshaler.
func (e Entry) MarshalJSON() ([]byte, error) { return e.AppendJSON(nil), nil }

// Header is the part of an entry that the server reads back from a payload it
// produced itself, cheaply, when a subscriber acknowledges it.
type Header struct {
	ID    string
	Inbox string
	Seq   int64
	From  string
	To    string
	Type  string
}

// PeekHeader reads the header of a payload written by Entry.AppendJSON without
// decoding the rest. ok is false for any other payload.
func PeekHeader(p []byte) (h Header, ok bool) {
	r := peeker{b: p}
	if !r.lit(`{"id":`) {
		return h, false
	}
	h.ID, ok = r.str()
	if !ok || !r.lit(`,"inbox":`) {
		return h, false
	}
	if h.Inbox, ok = r.str(); !ok || !r.lit(`,"seq":`) {
		return h, false
	}
	if h.Seq, ok = r.int(); !ok || !r.lit(`,"from":`) {
		return h, false
	}
	if h.From, ok = r.str(); !ok || !r.lit(`,"to":`) {
		return h, false
	}
	if h.To, ok = r.str(); !ok || !r.lit(`,"ts":`) {
		return h, false
	}
	if _, ok = r.int(); !ok || !r.lit(`,"type":`) {
		return h, false
	}
	if h.Type, ok = r.str(); !ok {
		return h, false
	}
	return h, true
}

type peeker struct {
	b []byte
	i int
}

func (r *peeker) lit(s string) bool {
	if len(r.b)-r.i < len(s) || string(r.b[r.i:r.i+len(s)]) != s {
		return false
	}
	r.i += len(s)
	return true
}

// str reads a JSON string without escapes (all header strings are ids, topics
// and type names, which never need escaping).
func (r *peeker) str() (string, bool) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return "", false
	}
	j := bytes.IndexByte(r.b[r.i+1:], '"')
	if j < 0 {
		return "", false
	}
	s := r.b[r.i+1 : r.i+1+j]
	if bytes.IndexByte(s, '\\') >= 0 {
		return "", false
	}
	r.i += j + 2
	return string(s), true
}

func (r *peeker) int() (int64, bool) {
	j := r.i
	if j < len(r.b) && r.b[j] == '-' {
		j++
	}
	for j < len(r.b) && r.b[j] >= '0' && r.b[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(string(r.b[r.i:j]), 10, 64)
	if err != nil {
		return 0, false
	}
	r.i = j
	return n, true
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Submission is what a client publishes into an inbox, parsed and checked.
type Submission struct {
	Type  string          // TypeMsg (the default), TypeTyping or TypeRead
	Cid   string          // optional client id of the message, for idempotent retries
	Body  json.RawMessage // TypeMsg: the body object, compact
	Inbox string          // TypeRead: the inbox being marked (defaults to the topic)
	Seq   int64           // TypeRead: the highest seq read
	With  string          // TypeRead in one's own inbox: only the conversation with this user
}

// ParseSubmission parses a client's payload. A payload that is not a JSON
// object is taken as plain text: its body becomes {"text": payload}, so
// `mosquitto_pub -m hello` sends a message. A JSON object must have the
// documented shape, or the result is an *Error with CodeBadPayload.
func ParseSubmission(p []byte) (Submission, error) {
	if !utf8.Valid(p) {
		return Submission{}, newError(CodeBadPayload, "payload is not UTF-8")
	}
	// Only JSON's own whitespace [RFC 8259 §2]: bytes.TrimSpace would also
	// strip Unicode spaces (U+00A0, U+3000, …), refusing such a text as empty
	// and taking "\u00a0{…}", which is no JSON, for an object.
	trimmed := bytes.Trim(p, " \t\r\n")
	if len(trimmed) == 0 {
		return Submission{}, newError(CodeBadPayload, "empty payload")
	}
	if trimmed[0] != '{' || !json.Valid(trimmed) {
		return Submission{Type: TypeMsg, Body: TextBody(string(p))}, nil
	}
	var raw struct {
		Type  *string         `json:"type"`
		Cid   *string         `json:"cid"`
		Body  json.RawMessage `json:"body"`
		Inbox *string         `json:"inbox"`
		Seq   *int64          `json:"seq"`
		With  *string         `json:"with"`
	}
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return Submission{}, newError(CodeBadPayload, "fields of the wrong type")
	}
	s := Submission{Type: TypeMsg}
	if raw.Type != nil {
		s.Type = *raw.Type
	}
	if raw.Cid != nil {
		if !ValidCid(*raw.Cid) {
			return Submission{}, newError(CodeBadPayload, "cid must be 1 to 64 bytes of printable UTF-8")
		}
		s.Cid = *raw.Cid
	}
	switch s.Type {
	case TypeMsg:
		body := bytes.TrimSpace(raw.Body)
		if len(body) == 0 || body[0] != '{' {
			return Submission{}, newError(CodeBadPayload, "body must be a JSON object")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, body); err != nil {
			return Submission{}, newError(CodeBadPayload, "body is not valid JSON")
		}
		s.Body = buf.Bytes()
	case TypeTyping:
	case TypeRead:
		if raw.Seq == nil || *raw.Seq < 0 {
			return Submission{}, newError(CodeBadPayload, "read needs a seq of 0 or more")
		}
		s.Seq = *raw.Seq
		if raw.Inbox != nil {
			if t, ok := ParseTopic(*raw.Inbox); !ok || (t.Kind != KindUser && t.Kind != KindGroup) {
				return Submission{}, newError(CodeBadPayload, "inbox must be u/{user} or g/{group}")
			}
			s.Inbox = *raw.Inbox
		}
		if raw.With != nil {
			if !ValidID(*raw.With) {
				return Submission{}, newError(CodeBadPayload, "with must be a user id")
			}
			s.With = *raw.With
		}
	default:
		return Submission{}, newError(CodeBadPayload, "unknown type")
	}
	return s, nil
}

// TextBody returns the body {"text": text}.
func TextBody(text string) json.RawMessage {
	b := append([]byte(`{"text":`), appendString(nil, text)...)
	return append(b, '}')
}

// Bounds of an error entry's data: the reason and the topic echoed are cut
// to these many bytes (on a character boundary, marked with "…"), and the
// payload is never echoed, so that ErrorData is at most MaxErrorData bytes
// whatever a client publishes.
const (
	MaxErrorReason = 200
	MaxErrorTopic  = 128
	MaxErrorData   = 2048
)

// ErrorData returns the Data of an error entry reporting a refused publish to
// an MQTT 3.1.1 client: {"code":135,"reason":"not authorized"}, plus the
// topic it was published to (cut to MaxErrorTopic bytes).
func ErrorData(code Code, reason, topic string) json.RawMessage {
	return ErrorDataSuppressed(code, reason, topic, 0)
}

// ErrorDataSuppressed is ErrorData for an error entry that also stands for
// suppressed earlier refusals whose own entries were not stored (the
// server stores a few error entries per user and time window):
// "suppressed":N when N > 0.
func ErrorDataSuppressed(code Code, reason, topic string, suppressed int64) json.RawMessage {
	b := []byte(`{"code":`)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"reason":`...)
	b = appendString(b, Truncate(reason, MaxErrorReason))
	if topic != "" {
		b = append(b, `,"topic":`...)
		b = appendString(b, Truncate(topic, MaxErrorTopic))
	}
	if suppressed > 0 {
		b = append(b, `,"suppressed":`...)
		b = strconv.AppendInt(b, suppressed, 10)
	}
	return append(b, '}')
}

// Truncate cuts s to at most n bytes on a character boundary, ending it
// with "…" (within the n bytes) when it was cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := n - len(ellipsis)
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if len(ellipsis) > n {
		return s[:cut]
	}
	return s[:cut] + ellipsis
}

// ReceiptData returns the Data of a receipt entry.
func ReceiptData(status, by, inbox string, ids []string) json.RawMessage {
	b := []byte(`{"status":`)
	b = appendString(b, status)
	b = append(b, `,"by":`...)
	b = appendString(b, by)
	if inbox != "" {
		b = append(b, `,"for":`...)
		b = appendString(b, inbox)
	}
	b = append(b, `,"ids":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, id)
	}
	return append(b, "]}"...)
}

// GroupEventData returns the Data of a group event entry.
func GroupEventData(user, by, name string) json.RawMessage {
	b := []byte(`{"by":`)
	b = appendString(b, by)
	if user != "" {
		b = append(b, `,"user":`...)
		b = appendString(b, user)
	}
	if name != "" {
		b = append(b, `,"name":`...)
		b = appendString(b, name)
	}
	return append(b, '}')
}

// GroupHistoryData returns the Data of a history_changed group event: by
// set the group's history to history.
func GroupHistoryData(by, history string) json.RawMessage {
	b := []byte(`{"by":`)
	b = appendString(b, by)
	b = append(b, `,"history":`...)
	b = appendString(b, history)
	return append(b, '}')
}

// GroupNoticeData returns the Data of a notice in a user's own inbox that it
// was added to (or removed from) group inbox ("g/…") named name.
func GroupNoticeData(user, by, inbox, name string) json.RawMessage {
	b := GroupEventData(user, by, name)
	b = append(b[:len(b)-1], `,"for":`...)
	b = appendString(b, inbox)
	return append(b, '}')
}

// GroupReceiptData returns the Data of a delivered receipt for group
// messages: count of the group's other members have them.
func GroupReceiptData(status, inbox string, ids []string, count, of int) json.RawMessage {
	b := []byte(`{"status":`)
	b = appendString(b, status)
	b = append(b, `,"for":`...)
	b = appendString(b, inbox)
	b = append(b, `,"ids":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, id)
	}
	b = append(b, `],"count":`...)
	b = strconv.AppendInt(b, int64(count), 10)
	b = append(b, `,"of":`...)
	b = strconv.AppendInt(b, int64(of), 10)
	return append(b, '}')
}

// ReadData returns the Data of a read entry, which tells a reader's devices
// how far it has read inbox (and, in its own inbox, the conversation with).
func ReadData(inbox, with string, seq int64) json.RawMessage {
	b := []byte(`{"for":`)
	b = appendString(b, inbox)
	if with != "" {
		b = append(b, `,"with":`...)
		b = appendString(b, with)
	}
	b = append(b, `,"read_seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	return append(b, '}')
}
