package protocol_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/parleychat/parley/protocol"
)

func TestValidCid(t *testing.T) {
	tests := map[string]struct {
		cid  string
		want bool
	}{
		"ascii":               {"c-1", true},
		"64 bytes":            {strings.Repeat("c", protocol.MaxCidLen), true},
		"65 bytes":            {strings.Repeat("c", protocol.MaxCidLen+1), false},
		"empty":               {"", false},
		"space":               {"a b", true},
		"accents and emoji":   {"é-😀", true},
		"NUL":                 {"a\x00b", false},
		"escape":              {"\x1b[31m", false},
		"newline":             {"a\nb", false},
		"DEL":                 {"a\x7f", false},
		"C1 control":          {"a\u0085", false},
		"line separator":      {"a\u2028", false},
		"bidi override":       {"a\u202e", false},
		"invalid UTF-8":       {"a\xff", false},
		"encoded surrogate":   {"\xed\xa0\x80", false},
		"replacement char":    {"\ufffd", true},
		"multibyte at length": {strings.Repeat("é", protocol.MaxCidLen/2), true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := protocol.ValidCid(tc.cid); got != tc.want {
				t.Fatalf("ValidCid(%q) = %v, want %v", tc.cid, got, tc.want)
			}
		})
	}
}

func TestParseSubmissionRefusesUnstorableCid(t *testing.T) {
	for name, p := range map[string]string{
		"NUL":       `{"cid":"a\u0000b","body":{}}`,
		"escape":    `{"cid":"\u001b","body":{}}`,
		"raw DEL":   "{\"cid\":\"a\x7f\",\"body\":{}}",
		"separator": `{"cid":"\u2028","body":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := protocol.ParseSubmission([]byte(p))
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Code != protocol.CodeBadPayload || !strings.Contains(pe.Detail, "printable") {
				t.Fatalf("ParseSubmission(%s) error %v, want 0x99 naming printable", p, err)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := map[string]struct {
		s    string
		n    int
		want string
	}{
		"short":          {"abc", 5, "abc"},
		"exact":          {"abcde", 5, "abcde"},
		"cut":            {"abcdefgh", 6, "abc…"},
		"char boundary":  {"ééééé", 8, "éé…"},
		"tiny n":         {"abcdef", 2, ""},
		"just ellipsis":  {"abcdef", 3, "…"},
		"invalid stays":  {"a\xffbcdefg", 5, "a\xff…"},
		"emoji boundary": {"😀😀😀", 9, "😀…"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := protocol.Truncate(tc.s, tc.n)
			if got != tc.want || len(got) > tc.n && len(tc.s) > tc.n {
				t.Fatalf("Truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
			}
		})
	}
}

// TestErrorDataBounded: whatever a client publishes, an error entry's data
// stays under MaxErrorData bytes and never carries more than the cut topic.
func TestErrorDataBounded(t *testing.T) {
	worst := strings.Repeat("\x01", 70000) // each byte escapes to six
	d := protocol.ErrorDataSuppressed(protocol.CodeBadPayload, worst, worst, 1<<62)
	if len(d) > protocol.MaxErrorData {
		t.Fatalf("error data of %d bytes, bound %d", len(d), protocol.MaxErrorData)
	}
	var v struct {
		Code       int    `json:"code"`
		Reason     string `json:"reason"`
		Topic      string `json:"topic"`
		Suppressed int64  `json:"suppressed"`
	}
	if err := json.Unmarshal(d, &v); err != nil {
		t.Fatalf("error data %s: %v", d, err)
	}
	if v.Code != 0x99 || v.Suppressed != 1<<62 || len(v.Topic) > protocol.MaxErrorTopic || !strings.HasSuffix(v.Topic, "…") {
		t.Fatalf("error data = %+v", v)
	}
	topic := "u/" + strings.Repeat("é", 100)
	d = protocol.ErrorData(protocol.CodeNoInbox, "inbox does not exist", topic)
	if err := json.Unmarshal(d, &v); err != nil || !utf8.ValidString(v.Topic) || !strings.HasPrefix(topic, strings.TrimSuffix(v.Topic, "…")) {
		t.Fatalf("error data %s: topic %q (%v)", d, v.Topic, err)
	}
	if got := string(protocol.ErrorData(protocol.CodeNotAuthorized, "not authorized", "g/x")); got != `{"code":135,"reason":"not authorized","topic":"g/x"}` {
		t.Fatalf("short error data changed: %s", got)
	}
}
