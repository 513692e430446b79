package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/parleychat/parley/storage"
)

// logLines is a JSON slog handler's output, one record a line.
type logLines struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(l.buf.Bytes()), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newLoggedFixture is newFixture with the audit log captured and the
// throttle configured.
func newLoggedFixture(t *testing.T, cfg Config) (*fixture, *logLines) {
	t.Helper()
	lines := &logLines{}
	cfg.Log = slog.New(slog.NewJSONHandler(lines, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return newFixture(t, cfg), lines
}

// countCompares makes the fixture's Service count its bcrypt comparisons,
// and those against the dummy hash.
func countCompares(fx *fixture) (all, dummy func() int) {
	var mu sync.Mutex
	var n, d int
	inner := fx.svc.compareHash
	fx.svc.compareHash = func(hash, pw []byte) error {
		mu.Lock()
		n++
		if bytes.Equal(hash, fx.svc.dummyHash) {
			d++
		}
		mu.Unlock()
		return inner(hash, pw)
	}
	return func() int { mu.Lock(); defer mu.Unlock(); return n }, func() int { mu.Lock(); defer mu.Unlock(); return d }
}

// TestLoginThrottled: after 5 wrong passwords the 6th attempt is refused
// as throttled, with the right password, and without a password check; once
// the lockout is over the right password works and clears the count.
func TestLoginThrottled(t *testing.T) {
	ctx := context.Background()
	fx, _ := newLoggedFixture(t, Config{Throttle: ThrottleConfig{UserFailures: 5, AddrFailures: -1, Backoff: time.Minute}})
	fx.register(t, "alice")
	compares, _ := countCompares(fx)
	for i := range 5 {
		if _, err := fx.svc.LoginFrom(ctx, "alice", "wrong-password", "http", fmt.Sprintf("192.0.2.%d:1", i)); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("wrong password %d: err = %v, want ErrBadCredentials", i+1, err)
		}
	}
	_, err := fx.svc.LoginFrom(ctx, "alice", "password-of-alice", "http", "192.0.2.99:1")
	var te *ThrottledError
	if !errors.As(err, &te) || !errors.Is(err, ErrThrottled) || te.Wait != time.Minute {
		t.Fatalf("6th attempt, right password: err = %v, want a ThrottledError of 1m", err)
	}
	if errors.Is(err, ErrBadCredentials) {
		t.Error("a throttled attempt matches ErrBadCredentials")
	}
	if n := compares(); n != 5 {
		t.Errorf("%d password checks, want 5: a throttled attempt must not check the password", n)
	}
	// Other users are not affected.
	fx.register(t, "bob")
	if _, err := fx.svc.LoginFrom(ctx, "bob", "password-of-bob", "http", "192.0.2.99:1"); err != nil {
		t.Fatalf("bob: %v", err)
	}
	fx.now = fx.now.Add(time.Minute)
	if _, err := fx.svc.LoginFrom(ctx, "alice", "password-of-alice", "http", "192.0.2.99:1"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	if _, err := fx.svc.LoginFrom(ctx, "alice", "wrong-password", "http", "192.0.2.99:1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("a wrong password after a success: err = %v, want ErrBadCredentials (the count starts afresh)", err)
	}
}

// TestLoginThrottledByAddress: one address guessing many users' passwords
// is locked out after AddrFailures, for every user.
func TestLoginThrottledByAddress(t *testing.T) {
	ctx := context.Background()
	fx, _ := newLoggedFixture(t, Config{Throttle: ThrottleConfig{UserFailures: 100, AddrFailures: 4, Backoff: time.Minute}})
	fx.register(t, "alice")
	for i := range 4 {
		if _, err := fx.svc.LoginFrom(ctx, fmt.Sprintf("user%d", i), "password", "http", "198.51.100.7:1000"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attempt %d: err = %v", i+1, err)
		}
	}
	if _, err := fx.svc.LoginFrom(ctx, "alice", "password-of-alice", "http", "198.51.100.7:2000"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("alice from the guessing address: err = %v, want ErrThrottled", err)
	}
	if _, err := fx.svc.LoginFrom(ctx, "alice", "password-of-alice", "http", "198.51.100.8:1000"); err != nil {
		t.Fatalf("alice from another address: %v", err)
	}
}

// TestLoginUnknownUserComparesDummy: a login for a user that does not
// exist compares the password with a bcrypt hash of the configured cost, as
// a known user's would be (equal timing, checked by the code path).
func TestLoginUnknownUserComparesDummy(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, Config{BcryptCost: 5})
	fx.register(t, "alice")
	// A deleted account keeps its row without a password hash.
	if err := fx.users.CreateUser(ctx, storage.User{ID: "ghost", Name: "Deleted user"}); err != nil {
		t.Fatal(err)
	}
	compares, dummy := countCompares(fx)
	if cost, err := bcrypt.Cost(fx.svc.dummyHash); err != nil || cost != 5 {
		t.Fatalf("dummy hash cost %d, %v; want the configured 5", cost, err)
	}
	for name, id := range map[string]string{"unknown user": "mallory", "not a user id": "Mallory!", "administrator": adminID, "deleted user": "ghost"} {
		t.Run(name, func(t *testing.T) {
			before, beforeDummy := compares(), dummy()
			if _, err := fx.svc.Login(ctx, id, "some-password"); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("err = %v, want ErrBadCredentials", err)
			}
			if compares()-before != 1 || dummy()-beforeDummy != 1 {
				t.Fatalf("%d comparisons, %d with the dummy hash; want 1 with the dummy hash", compares()-before, dummy()-beforeDummy)
			}
		})
	}
	before := dummy()
	if _, err := fx.svc.Login(ctx, "alice", "wrong-password"); !errors.Is(err, ErrBadCredentials) {
		t.Fatal(err)
	}
	if dummy() != before {
		t.Error("a known user's password compared with the dummy hash")
	}
	// The dummy hash is a well-formed hash that matches no password.
	if err := bcrypt.CompareHashAndPassword(fx.svc.dummyHash, []byte("")); !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		t.Errorf("dummy hash: %v", err)
	}
}

// TestLoginStoreDownNotCounted: a check the store could not make counts
// neither way.
func TestLoginStoreDownNotCounted(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, Config{Throttle: ThrottleConfig{UserFailures: 2, AddrFailures: 2, Backoff: time.Hour}})
	fx.register(t, "alice")
	fx.users.setFail(storage.ErrUnavailable)
	for range 10 {
		if _, err := fx.svc.LoginFrom(ctx, "alice", "password-of-alice", "http", "192.0.2.1:1"); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("store down: err = %v", err)
		}
	}
	fx.users.setFail(nil)
	if _, err := fx.svc.LoginFrom(ctx, "alice", "password-of-alice", "http", "192.0.2.1:1"); err != nil {
		t.Fatalf("store back: %v", err)
	}
}

func bcryptHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// argon2idHash encodes pw as the argon2 command does (-id -e).
func argon2idPHC(pw string) string {
	salt := []byte("parley-test-salt")
	key := argon2.IDKey([]byte(pw), salt, 2, 64, 1, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=64,t=2,p=1$%s$%s", argon2.Version,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// TestAdminHashes: administrators' passwords may be configured as bcrypt
// or argon2id hashes, or (development) in plaintext.
func TestAdminHashes(t *testing.T) {
	const pw = "correct horse battery"
	b := bcryptHash(t, pw)
	tests := map[string]struct {
		secret string
		kind   string
	}{
		"bcrypt $2a$":   {b, "bcrypt"},
		"bcrypt $2b$":   {"$2b$" + b[4:], "bcrypt"},
		"bcrypt $2y$":   {"$2y$" + b[4:], "bcrypt"},
		"argon2id":      {argon2idPHC(pw), "argon2id"},
		"argon2id, pad": {strings.Replace(argon2idPHC(pw), "$cGFybGV5LXRlc3Qtc2FsdA$", "$cGFybGV5LXRlc3Qtc2FsdA==$", 1), "argon2id"},
		"plaintext":     {pw, "plain"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			fx := newFixture(t, Config{Admins: map[string]string{"root": tc.secret}})
			if got := fx.svc.admins["root"].verifier(); got != tc.kind {
				t.Fatalf("read as %q, want %q", got, tc.kind)
			}
			if !fx.svc.CheckAdmin("root", pw) {
				t.Error("right password refused")
			}
			for _, wrong := range []string{"", "correct horse battery ", "Correct horse battery", tc.secret} {
				if wrong == pw {
					continue
				}
				if fx.svc.CheckAdmin("root", wrong) {
					t.Errorf("password %q accepted", wrong)
				}
			}
			admin, err := fx.svc.Authenticate(context.Background(), "root", pw, "mqtt", "192.0.2.1:1")
			if err != nil || !admin {
				t.Errorf("Authenticate: %v, %v", admin, err)
			}
		})
	}
	bad := map[string]string{
		"bcrypt, truncated":        b[:30],
		"bcrypt $2x$":              "$2x$" + b[4:],
		"argon2i":                  strings.Replace(argon2idPHC(pw), "$argon2id$", "$argon2i$", 1),
		"argon2id, version 16":     strings.Replace(argon2idPHC(pw), "v=19", "v=16", 1),
		"argon2id, no parameters":  strings.Replace(argon2idPHC(pw), "m=64,t=2,p=1", "", 1),
		"argon2id, zero time":      strings.Replace(argon2idPHC(pw), "t=2", "t=0", 1),
		"argon2id, short hash":     argon2idPHC(pw)[:len(argon2idPHC(pw))-30],
		"argon2id, salt not b64":   strings.Replace(argon2idPHC(pw), "$cGFybGV5LXRlc3Qtc2FsdA$", "$!!!$", 1),
		"plaintext, 7 bytes":       "1234567",
		"argon2id, missing a part": "$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHQ",
	}
	for name, secret := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := New(Config{Admins: map[string]string{"root": secret}}, newFakeUsers()); err == nil {
				t.Fatalf("New accepted %q", secret)
			}
		})
	}
}

// TestAdminPlaintextWarns: a plaintext administrator password is accepted
// with a warning; a hash without.
func TestAdminPlaintextWarns(t *testing.T) {
	_, lines := newLoggedFixture(t, Config{Admins: map[string]string{"root": "plain-password", "ops": bcryptHash(t, "x")}})
	var warned []any
	for _, r := range lines.records(t) {
		if r["level"] == "WARN" && strings.Contains(r["msg"].(string), "plaintext") {
			warned = append(warned, r["user"])
		}
	}
	if len(warned) != 1 || warned[0] != "root" {
		t.Errorf("plaintext warnings for %v, want [root]", warned)
	}
}

// TestAdminThrottled: an administrator's password is throttled on every
// listener together (one count per name), and a non-administrator's name
// is throttled the same way over HTTP, so that 429 does not tell who the
// administrators are.
func TestAdminThrottled(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{adminID, "nobody"} {
		t.Run(name, func(t *testing.T) {
			fx := newFixture(t, Config{Throttle: ThrottleConfig{UserFailures: 5, AddrFailures: -1, Backoff: time.Hour}})
			listeners := []string{"mqtt", "admin", "ws", "http", "mqtts"}
			for i, l := range listeners {
				if err := fx.svc.CheckAdminFrom(name, "guess", l, fmt.Sprintf("192.0.2.%d:1", i)); !errors.Is(err, ErrBadCredentials) {
					t.Fatalf("guess %d on %s: err = %v", i+1, l, err)
				}
			}
			if err := fx.svc.CheckAdminFrom(name, adminPassword, "admin", "192.0.2.50:1"); !errors.Is(err, ErrThrottled) {
				t.Fatalf("6th attempt, right password, over HTTP: err = %v, want ErrThrottled", err)
			}
			// Over MQTT a name that is no administrator's is a token check.
			if admin, err := fx.svc.Authenticate(ctx, name, adminPassword, "mqtt", "192.0.2.50:1"); name == adminID && (!errors.Is(err, ErrThrottled) || admin) {
				t.Fatalf("6th attempt over MQTT: %v, %v; want ErrThrottled", admin, err)
			}
			if fx.svc.CheckAdmin(name, adminPassword) {
				t.Fatal("CheckAdmin let a locked-out name through")
			}
		})
	}
}

// TestAuthenticateTokensNotThrottled: wrong tokens are counted and logged,
// but never lock a user out: a guess is hopeless, and a lockout would let
// anyone keep the user's devices offline.
func TestAuthenticateTokensNotThrottled(t *testing.T) {
	ctx := context.Background()
	fx, lines := newLoggedFixture(t, Config{Throttle: ThrottleConfig{UserFailures: 2, AddrFailures: 2, Backoff: time.Hour}})
	alice := fx.register(t, "alice")
	for i := range 20 {
		if _, err := fx.svc.Authenticate(ctx, "alice", fmt.Sprintf("pt_wrong-token-%02d", i), "mqtt", "192.0.2.1:1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("wrong token %d: err = %v", i, err)
		}
	}
	if admin, err := fx.svc.Authenticate(ctx, "alice", alice, "mqtt", "192.0.2.1:1"); err != nil || admin {
		t.Fatalf("alice's own token after 20 wrong ones: %v, %v", admin, err)
	}
	n := 0
	for _, r := range lines.records(t) {
		if r["msg"] == "sign-in failed" && r["outcome"] == OutcomeBadToken {
			n++
		}
	}
	if n != 20 {
		t.Errorf("%d audit lines for wrong tokens, want 20", n)
	}
	if got := metric(t, fx.svc, "parley_auth_failures_total", "listener=mqtt,outcome=bad_token"); got != 20 {
		t.Errorf("parley_auth_failures_total{mqtt,bad_token} = %v, want 20", got)
	}
}

// TestAuditLog: each failed check writes one line with stable keys (user,
// address, listener, outcome) and never the secret; the failure that
// starts a lockout is a warning.
func TestAuditLog(t *testing.T) {
	ctx := context.Background()
	fx, lines := newLoggedFixture(t, Config{Throttle: ThrottleConfig{UserFailures: 2, AddrFailures: -1, Backoff: time.Minute}})
	fx.register(t, "alice")
	const secret = "hunter2-secret-guess"
	fx.svc.LoginFrom(ctx, "alice", secret, "http", "192.0.2.1:1234")
	fx.svc.LoginFrom(ctx, "mallory", secret, "http", "192.0.2.1:1234")
	fx.svc.CheckAdminFrom(adminID, secret, "admin", "[2001:db8::1]:443")
	fx.svc.CheckAdminFrom(adminID, secret, "admin", "[2001:db8::1]:443")
	fx.svc.CheckAdminFrom(adminID, secret, "admin", "[2001:db8::1]:443") // throttled
	fx.svc.Authenticate(ctx, "alice", "pt_"+secret, "ws", "192.0.2.2:1")
	fx.svc.LoginFrom(ctx, strings.Repeat("x", 5000), secret, "http", "192.0.2.3:1")

	if strings.Contains(lines.String(), "hunter2") {
		t.Fatalf("a secret in the log:\n%s", lines)
	}
	type line struct{ level, user, address, listener, outcome string }
	var got []line
	for _, r := range lines.records(t) {
		if r["outcome"] == nil {
			continue
		}
		str := func(k string) string { s, _ := r[k].(string); return s }
		got = append(got, line{str("level"), str("user"), str("address"), str("listener"), str("outcome")})
	}
	long := strings.Repeat("x", 64) + "…"
	want := []line{
		{"INFO", "alice", "192.0.2.1:1234", "http", OutcomeBadPassword},
		{"INFO", "mallory", "192.0.2.1:1234", "http", OutcomeUnknownUser},
		{"INFO", adminID, "[2001:db8::1]:443", "admin", OutcomeBadPassword},
		{"WARN", adminID, "[2001:db8::1]:443", "admin", OutcomeBadPassword},
		{"DEBUG", adminID, "[2001:db8::1]:443", "admin", "throttled"},
		{"INFO", "alice", "192.0.2.2:1", "ws", OutcomeBadToken},
		{"INFO", long, "192.0.2.3:1", "http", OutcomeUnknownUser},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("audit lines:\n got %v\nwant %v", got, want)
	}
}

// TestAuthMetrics: failures by listener and outcome, throttled attempts and
// the keys locked out now.
func TestAuthMetrics(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, Config{Throttle: ThrottleConfig{UserFailures: 2, AddrFailures: 3, Backoff: time.Minute}})
	fx.svc.CheckAdminFrom(adminID, "guess", "mqtt", "192.0.2.1:1")
	fx.svc.CheckAdminFrom(adminID, "guess", "admin", "192.0.2.1:1")  // root locked
	fx.svc.CheckAdminFrom(adminID, "guess", "admin", "192.0.2.1:1")  // throttled
	fx.svc.LoginFrom(ctx, "mallory", "guess", "http", "192.0.2.1:1") // the address locked
	fx.svc.LoginFrom(ctx, "mallory", "guess", "http", "192.0.2.1:1") // throttled
	for series, want := range map[string]float64{
		"parley_auth_failures_total{listener=admin,outcome=bad_password}": 1,
		"parley_auth_failures_total{listener=mqtt,outcome=bad_password}":  1,
		"parley_auth_failures_total{listener=http,outcome=unknown_user}":  1,
		"parley_auth_throttled_total{listener=admin}":                     1,
		"parley_auth_throttled_total{listener=http}":                      1,
		"parley_auth_locked{key=user}":                                    1,
		"parley_auth_locked{key=address}":                                 1,
	} {
		name, labels, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
		if got := metric(t, fx.svc, name, labels); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	fx.now = fx.now.Add(time.Minute)
	if got := metric(t, fx.svc, "parley_auth_locked", "key=user"); got != 0 {
		t.Errorf("locked users after the lockout: %v, want 0", got)
	}
}

// metric returns the value of the series name{labels} ("k=v,k=v", in
// label order) of svc's collectors, 0 when there is none.
func metric(t *testing.T, svc *Service, name, labels string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(svc.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			if strings.Join(ls, ",") != labels {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestIsUser(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, Config{})
	fx.register(t, "alice")
	for id, want := range map[string]bool{"alice": true, "bob": false, adminID: false, "Alice!": false} {
		if got, err := fx.svc.IsUser(ctx, id); err != nil || got != want {
			t.Errorf("IsUser(%q) = %v, %v; want %v", id, got, err, want)
		}
	}
	fx.users.setFail(storage.ErrUnavailable)
	if _, err := fx.svc.IsUser(ctx, "alice"); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("IsUser, store down: err = %v", err)
	}
}
