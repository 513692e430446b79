package broker_test

import (
	"testing"

	"github.com/parleychat/parley/broker/brokertest"
)

// TestDisplayNamesCleaned: a user's and a group's names lose the bidi
// controls and invisible characters that would make them look like
// something else ("Alice\u202e (Parley Support)"); a name of nothing but
// such characters is refused.
func TestDisplayNamesCleaned(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	var created struct{ Token string }
	if code := n.HTTPDo("POST", "/v1/users", "", map[string]string{"id": "mallory", "password": "mallory-password",
		"name": "Mallory\u202e\u200b (Parley Support)"}, &created); code != 201 {
		t.Fatalf("sign-up: %d", code)
	}
	var u struct{ Name string }
	if code := n.HTTPDo("GET", "/v1/users/mallory", created.Token, nil, &u); code != 200 || u.Name != "Mallory (Parley Support)" {
		t.Fatalf("GET /v1/users/mallory: %d %q, want the name without its bidi override and zero-width space", code, u.Name)
	}
	if code := n.HTTPDo("POST", "/v1/users", "", map[string]string{"id": "ghost", "password": "ghost-password",
		"name": "\u202e\u200b"}, nil); code != 400 {
		t.Fatalf("sign-up with an invisible name: %d, want 400", code)
	}
	var g struct{ ID, Name string }
	if code := n.HTTPDo("POST", "/v1/groups", created.Token, map[string]any{"name": "\u2067Trip\u2069\n"}, &g); code != 201 || g.Name != "Trip" {
		t.Fatalf("create group: %d %q, want 201 Trip", code, g.Name)
	}
	if code := n.HTTPDo("PATCH", "/v1/groups/"+g.ID, created.Token, map[string]any{"name": "\u200f"}, nil); code != 400 {
		t.Fatalf("rename to an invisible name: %d, want 400", code)
	}
}
