package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/broker/brokertest"
)

// argon2idOf encodes pw as `argon2 SALT -id -e` prints it.
func argon2idOf(pw string) string {
	salt := []byte("sixteen byte slt")
	key := argon2.IDKey([]byte(pw), salt, 1, 64, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s",
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// TestBruteForceSettings: the throttle and the administrators' listener
// have the defaults configs/parley.yaml documents; administrators may be
// given as hashes (argon2id's commas included); bad values are refused with
// the setting's name.
func TestBruteForceSettings(t *testing.T) {
	fromFile, _, _, err := loadConfig([]string{"-config", "../../configs/parley.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defaults, _, _, err := loadConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := auth.ThrottleConfig{UserFailures: 5, AddrFailures: 20, Backoff: time.Second, MaxBackoff: 15 * time.Minute, ForgetAfter: time.Hour}
	for _, c := range []config{fromFile, defaults} {
		if got := c.throttle(); got != want {
			t.Errorf("throttle %+v, want %+v", got, want)
		}
		if c.AdminAddr != "" {
			t.Errorf("http.admin_addr %q, want empty", c.AdminAddr)
		}
	}

	b, err := bcrypt.GenerateFromPassword([]byte("root-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	a2 := argon2idOf("ops-password")
	cfg, _, _, err := loadConfig(nil, env(map[string]string{"PARLEY_ADMINS": "root:" + string(b) + ",ops:" + a2 + ",dev:plain-password",
		"PARLEY_HTTP_ADMIN_ADDR": "127.0.0.1:9999", "PARLEY_AUTH_THROTTLE_USER_FAILURES": "-1"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	admins, err := cfg.admins()
	if err != nil || len(admins) != 3 || admins["root"] != string(b) || admins["ops"] != a2 || admins["dev"] != "plain-password" {
		t.Fatalf("admins = %v, %v", admins, err)
	}
	if cfg.AdminAddr != "127.0.0.1:9999" || cfg.throttle().UserFailures != -1 {
		t.Errorf("http.admin_addr %q, user_failures %d", cfg.AdminAddr, cfg.throttle().UserFailures)
	}
	var out bytes.Buffer
	cfg.print(&out)
	if s := out.String(); !strings.Contains(s, "dev:***,ops:***,root:***") || strings.Contains(s, "$2a$") || strings.Contains(s, "argon2id") {
		t.Errorf("-check-config printed a hash, or not every name:\n%s", s)
	}

	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"user failures 0":             {[]string{"-auth.throttle.user_failures", "0"}, nil, "auth.throttle.user_failures"},
		"addr failures -2":            {[]string{"-auth.throttle.addr_failures", "-2"}, nil, "auth.throttle.addr_failures"},
		"backoff 0":                   {[]string{"-auth.throttle.backoff", "0s"}, nil, "auth.throttle.backoff"},
		"max backoff below backoff":   {[]string{"-auth.throttle.backoff", "1m", "-auth.throttle.max_backoff", "30s"}, nil, "auth.throttle.max_backoff"},
		"forget before max backoff":   {[]string{"-auth.throttle.forget_after", "1m"}, nil, "auth.throttle.forget_after"},
		"admin hash truncated":        {nil, map[string]string{"PARLEY_ADMINS": "root:" + string(b[:20])}, "admins: root"},
		"admin argon2i":               {nil, map[string]string{"PARLEY_ADMINS": "root:" + strings.Replace(a2, "argon2id", "argon2i", 1)}, "admins: root"},
		"admin plaintext of 7 bytes":  {nil, map[string]string{"PARLEY_ADMINS": "root:1234567"}, "admins: root"},
		"admin hash, comma, no name:": {nil, map[string]string{"PARLEY_ADMINS": ",root:" + a2}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, _, err := loadConfig(tc.args, env(tc.env), io.Discard)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
}

var adminListening = regexp.MustCompile(`msg="parley listening" .*admin=(\S+)`)

// TestBruteForceCommand: the parley command with administrators given as
// hashes, their own listener and a throttle of 2 failures: the public
// address refuses administrators (404), the private one serves them, two
// wrong passwords lock the name out (429 over HTTP, 0x9F over MQTT), and
// the audit log names user, address, listener and outcome, never the
// password tried.
func TestBruteForceCommand(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("root-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	c := startChild(t, "PARLEY_ADMINS=root:"+string(b)+",ops:"+argon2idOf("ops-password"),
		"PARLEY_HTTP_ADMIN_ADDR=127.0.0.1:0", "PARLEY_AUTH_THROTTLE_USER_FAILURES=2",
		"PARLEY_AUTH_THROTTLE_BACKOFF=1h", "PARLEY_AUTH_THROTTLE_MAX_BACKOFF=1h")
	c.mu.Lock()
	m := adminListening.FindStringSubmatch(c.stderr.String())
	c.mu.Unlock()
	if m == nil {
		t.Fatal("the startup line names no administrators' listener")
	}
	admin := m[1]
	get := func(base, user, pw string) (int, string) {
		req, err := http.NewRequest("GET", base+"/v1/cluster", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(user, pw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	if code, _ := get(c.http, "root", "root-password"); code != 404 {
		t.Errorf("administrator on http.addr: %d, want 404", code)
	}
	if code, _ := get(admin, "root", "root-password"); code != 200 {
		t.Errorf("root (bcrypt) on http.admin_addr: %d, want 200", code)
	}
	if code, _ := get(admin, "ops", "ops-password"); code != 200 {
		t.Errorf("ops (argon2id) on http.admin_addr: %d, want 200", code)
	}
	for i := range 2 {
		if code, _ := get(admin, "root", "wrong-guess-secret"); code != 401 {
			t.Fatalf("guess %d: %d, want 401", i+1, code)
		}
	}
	if code, retry := get(admin, "root", "root-password"); code != 429 || retry == "" {
		t.Fatalf("right password after 2 guesses: %d (Retry-After %q), want 429", code, retry)
	}
	n := c.node(t)
	if cl, err := n.DialV5("root", "root-password", "root/console", brokertest.V5Options{}); err == nil || cl.Connack.ReasonCode != 0x9F {
		t.Fatalf("MQTT after the guesses: %v; want CONNACK 0x9F", err)
	}
	c.mu.Lock()
	logs := c.stderr.String()
	c.mu.Unlock()
	audit := regexp.MustCompile(`level=(INFO|WARN) msg="sign-in failed[^"]*".* user=root address=127\.0\.0\.1:\d+ listener=admin outcome=bad_password`)
	if got := len(audit.FindAllString(logs, -1)); got != 2 {
		t.Errorf("%d audit lines for the 2 guesses, want 2:\n%s", got, logs)
	}
	if strings.Contains(logs, "wrong-guess-secret") || strings.Contains(logs, "root-password") {
		t.Errorf("a password in the log:\n%s", logs)
	}
}
