package broker_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/parleychat/parley/broker/brokertest"
)

// TestRegisterPasswordRule: sign-up and password change refuse short,
// all-space and common passwords with 400 and the reason (auth.CheckPassword).
func TestRegisterPasswordRule(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	token := n.User("alice")
	for name, c := range map[string]struct {
		password string
		want     int
		reason   string
	}{
		"nine characters":  {"violet-8m", 400, "at least 10 characters"},
		"eight spaces":     {"        ", 400, "at least 10 characters"},
		"twelve spaces":    {"            ", 400, "only spaces"},
		"common":           {"Password123", 400, "too common"},
		"common keyboard":  {"qwertyuiop", 400, "too common"},
		"ten, not common":  {"violet-8mq", 201, ""},
		"the old minimum8": {"abcd-123", 400, "at least 10 characters"},
	} {
		t.Run(name, func(t *testing.T) {
			id := strings.NewReplacer(" ", "", ",", "").Replace(name)
			code, _, out := httpAsk(t, "POST", n.HTTP+"/v1/users", nil, map[string]string{"id": id, "password": c.password})
			if body := fmt.Sprint(out); code != c.want || !strings.Contains(body, c.reason) {
				t.Fatalf("POST /v1/users: %d %s, want %d saying %q", code, body, c.want, c.reason)
			}
		})
	}
	// The same rule for a password change.
	var out map[string]any
	code := n.HTTPDo("PUT", "/v1/me/password", token,
		map[string]string{"old_password": "password-alice", "new_password": "1234567890"}, &out)
	if code != 400 || !strings.Contains(fmt.Sprint(out), "too common") {
		t.Fatalf("PUT /v1/me/password with a common password: %d %v, want 400 saying it is too common", code, out)
	}
}
