package protocol_test

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/parleychat/parley/protocol"
)

// Presence payloads as clients publish them (and as they should not).
var presencePayloads = map[string]string{
	"away":            `{"status":"away"}`,
	"online":          `{"status":"online"}`,
	"extra fields":    ` {"status":"away","since":12,"user":"mallory"}`,
	"offline":         `{"status":"offline"}`,
	"unknown status":  `{"status":"busy"}`,
	"no status":       `{"user":"alice"}`,
	"status not text": `{"status":1}`,
	"null":            `null`,
	"text":            `away`,
	"string":          `"away"`,
	"empty":           ``,
	"will payload":    `gone`,
	"broken":          `{"status":"away"`,
}

func TestParsePresenceUpdate(t *testing.T) {
	want := map[string]string{"away": "away", "online": "online", "extra fields": "away"}
	for name, p := range presencePayloads {
		t.Run(name, func(t *testing.T) {
			status, err := protocol.ParsePresenceUpdate([]byte(p))
			if w, ok := want[name]; ok {
				if err != nil || status != w {
					t.Fatalf("ParsePresenceUpdate(%q) = %q, %v; want %q", p, status, err, w)
				}
				return
			}
			if status != "" {
				t.Fatalf("ParsePresenceUpdate(%q) = %q with error %v", p, status, err)
			}
			wantBadPayload(t, err)
		})
	}
}

func TestPresenceJSON(t *testing.T) {
	cases := map[string]struct {
		p    protocol.Presence
		want string
	}{
		"online":        {protocol.Presence{User: "alice", Status: "online", TS: 1795797858765}, `{"user":"alice","status":"online","ts":1795797858765}`},
		"offline":       {protocol.Presence{User: "alice", Status: "offline", LastSeen: 1795797999000}, `{"user":"alice","status":"offline","last_seen":1795797999000}`},
		"never seen":    {protocol.Presence{User: "bob", Status: "offline"}, `{"user":"bob","status":"offline"}`},
		"hidden":        {protocol.Presence{User: "carol", Status: "hidden"}, `{"user":"carol","status":"hidden"}`},
		"odd user name": {protocol.Presence{User: `a"<b>`, Status: "away", TS: 1}, `{"user":"a\"\u003cb\u003e","status":"away","ts":1}`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, _ := json.Marshal(c.p)
			if string(got) != c.want {
				t.Fatalf("JSON = %s, want %s", got, c.want)
			}
			var back protocol.Presence
			if err := json.Unmarshal(got, &back); err != nil || back != c.p {
				t.Fatalf("decoded back to %+v (%v), want %+v", back, err, c.p)
			}
		})
	}
}

func FuzzParsePresenceUpdate(f *testing.F) {
	for _, p := range presencePayloads {
		f.Add([]byte(p))
	}
	for _, p := range clientPayloads {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		status, err := protocol.ParsePresenceUpdate(p)
		if err != nil {
			wantBadPayload(t, err)
			if status != "" {
				t.Fatalf("ParsePresenceUpdate(%q) = %q with an error", p, status)
			}
			return
		}
		if status != protocol.StatusOnline && status != protocol.StatusAway {
			t.Fatalf("ParsePresenceUpdate(%q) = %q", p, status)
		}
		var v map[string]any
		if json.Unmarshal(p, &v) != nil || v["status"] != status {
			t.Fatalf("ParsePresenceUpdate(%q) = %q, but it is not such an object", p, status)
		}
	})
}

func FuzzPresenceJSON(f *testing.F) {
	f.Add("alice", "online", int64(1795797858765), int64(0))
	f.Add(`a"b\c`, "\xff", int64(math.MinInt64), int64(-1))
	f.Fuzz(func(t *testing.T, user, status string, ts, lastSeen int64) {
		p := protocol.Presence{User: user, Status: status, TS: ts, LastSeen: lastSeen}
		b := p.AppendJSON(nil)
		var back protocol.Presence
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%+v encodes to invalid JSON %s: %v", p, b, err)
		}
		if back.TS != ts || back.LastSeen != lastSeen || back.User != coerced(user) || back.Status != coerced(status) {
			t.Fatalf("%+v encodes to %s, which decodes to %+v", p, b, back)
		}
	})
}
