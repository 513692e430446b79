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

// TestDisplayNamesLikeOthersIDs: a display name that reads as another
// user's id, or an administrator's, is refused; one that reads as the
// user's own id is not. Both stores: each computes the ids' skeletons in
// SQL.
func TestDisplayNamesLikeOthersIDs(t *testing.T) { forEachStore(t, testDisplayNamesLikeOthersIDs) }

func testDisplayNamesLikeOthersIDs(t *testing.T, o brokertest.Options) {
	n := brokertest.Start(t, o)
	n.User("alice")
	n.User("bob")
	signUp := func(id, name string) (int, string) {
		var e struct{ Error string }
		code := n.HTTPDo("POST", "/v1/users", "", map[string]string{"id": id, "password": id + "-password", "name": name}, &e)
		return code, e.Error
	}
	for _, name := range []string{
		"аlice", // Cyrillic а
		"ALICE", // capital I for l
		"a1ice", // digit one
		"ａｌｉｃｅ", // fullwidth
		"b0b",   // digit zero
		brokertest.Admin,
	} {
		if code, msg := signUp("mallory", name); code != 400 || msg != "name reads as another user's id" {
			t.Errorf("mallory signing up as %q: %d %q, want 400", name, code, msg)
		}
	}
	for id, name := range map[string]string{
		"mallory": "Mallory", // nobody's id
		"a1ex":    "ALEX",    // its own id, read as alex
		"carol":   "Alice Liddell",
	} {
		if code, msg := signUp(id, name); code != 201 {
			t.Errorf("%s signing up as %q: %d %q, want 201", id, name, code, msg)
		}
	}
}
