package hooks

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// fakeAuthn is an Authenticator whose users and administrators are fixed.
type fakeAuthn struct {
	admins, users map[string]bool
	storeDown     bool
	lookups       int
}

func (f *fakeAuthn) Authenticate(context.Context, string, string, string, string) (bool, error) {
	return false, errors.New("not used")
}

func (f *fakeAuthn) IsAdmin(id string) bool { return f.admins[id] }

func (f *fakeAuthn) IsUser(_ context.Context, id string) (bool, error) {
	f.lookups++
	if f.storeDown {
		return false, errors.New("store down")
	}
	return f.users[id], nil
}

// TestAdminClientIDRule: which client ids an administrator may use, when
// impersonation is needed, and that it is logged at warn.
func TestAdminClientIDRule(t *testing.T) {
	impersonate := packets.Packet{Properties: packets.Properties{User: []packets.UserProperty{{Key: "impersonate", Val: "true"}}}}
	other := packets.Packet{Properties: packets.Properties{User: []packets.UserProperty{{Key: "impersonate", Val: "yes"}}}}
	tests := map[string]struct {
		clientID  string
		pk        packets.Packet
		storeDown bool
		want      byte // 0: allowed
		lookup    bool // the store is asked
		warned    bool
	}{
		"own id":                    {clientID: "admin"},
		"own device":                {clientID: "admin/console"},
		"no user's":                 {clientID: "console", lookup: true},
		"not an id's shape":         {clientID: "Console-1"},
		"another administrator's":   {clientID: "ops/x"},
		"a user's device":           {clientID: "alice/phone", want: 0x85, lookup: true},
		"a user's bare id":          {clientID: "alice", want: 0x85, lookup: true},
		"a user's, other property":  {clientID: "alice/phone", pk: other, want: 0x85, lookup: true},
		"a user's, impersonating":   {clientID: "alice/phone", pk: impersonate, lookup: true, warned: true},
		"store down, someone's":     {clientID: "alice/phone", storeDown: true, want: 0x88, lookup: true},
		"store down, own id":        {clientID: "admin/x", storeDown: true},
		"impersonating, no user's":  {clientID: "nobody/x", pk: impersonate, lookup: true},
		"prefix of a user's id":     {clientID: "alic/x", lookup: true},
		"user's id as a longer one": {clientID: "alice2", lookup: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var logs bytes.Buffer
			authn := &fakeAuthn{admins: map[string]bool{"admin": true, "ops": true}, users: map[string]bool{"alice": true},
				storeDown: tc.storeDown}
			h := NewAuth(AuthConfig{}, authn, nil, nil, func(error) bool { return false },
				slog.New(slog.NewTextHandler(&logs, nil)))
			cl := &mqtt.Client{ID: tc.clientID}
			cl.Net.Listener, cl.Net.Remote = "mqtt", "192.0.2.1:1234"
			code, _ := h.adminClientID(context.Background(), cl, tc.pk, "admin")
			got := byte(0)
			if code != nil {
				got = code.Code
			}
			if got != tc.want {
				t.Errorf("refusal %#x, want %#x", got, tc.want)
			}
			if (authn.lookups > 0) != tc.lookup {
				t.Errorf("store asked %d times, want asked %v", authn.lookups, tc.lookup)
			}
			warned := strings.Contains(logs.String(), "level=WARN msg=\"administrator impersonating")
			if warned != tc.warned {
				t.Errorf("impersonation warning %v, want %v:\n%s", warned, tc.warned, logs.String())
			}
			if tc.warned && !strings.Contains(logs.String(), "impersonated=alice") {
				t.Errorf("the warning does not name the user:\n%s", logs.String())
			}
		})
	}
}
