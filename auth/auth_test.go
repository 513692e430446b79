package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeUsers is an in-memory Users that follows the storage.Users contract
// (storage/storetest): unknown users and tokens are ErrNotFound, a token is
// found while now is before its expiry, deleting an unknown token is no error.
type fakeUsers struct {
	mu          sync.Mutex // guards the fields below
	users       map[string]storage.User
	tokens      map[string]fakeToken // by hash
	fail        error                // when set, every call returns it
	tokenLookup int                  // calls of TokenUser
}

type fakeToken struct {
	user    string
	expires time.Time
}

func newFakeUsers() *fakeUsers {
	return &fakeUsers{users: map[string]storage.User{}, tokens: map[string]fakeToken{}}
}

func (f *fakeUsers) CreateUser(_ context.Context, u storage.User) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if _, ok := f.users[u.ID]; ok {
		return fmt.Errorf("create user %q: %w", u.ID, storage.ErrExists)
	}
	f.users[u.ID] = u
	return nil
}

func (f *fakeUsers) UsersLike(_ context.Context, skeleton string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	var ids []string
	for id := range f.users {
		if protocol.IDSkeleton(id) == skeleton {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func (f *fakeUsers) GetUser(_ context.Context, id string) (storage.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return storage.User{}, f.fail
	}
	u, ok := f.users[id]
	if !ok {
		return storage.User{}, fmt.Errorf("get user %q: %w", id, storage.ErrNotFound)
	}
	return u, nil
}

func (f *fakeUsers) CreateToken(_ context.Context, hash []byte, user string, expires time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if _, ok := f.users[user]; !ok {
		return fmt.Errorf("create token: %w", storage.ErrNotFound)
	}
	f.tokens[string(hash)] = fakeToken{user: user, expires: expires}
	return nil
}

func (f *fakeUsers) TokenUser(_ context.Context, hash []byte, now time.Time) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenLookup++
	if f.fail != nil {
		return "", f.fail
	}
	tok, ok := f.tokens[string(hash)]
	if !ok || !now.Before(tok.expires) {
		return "", fmt.Errorf("token user: %w", storage.ErrNotFound)
	}
	return tok.user, nil
}

func (f *fakeUsers) DeleteToken(_ context.Context, hash []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	delete(f.tokens, string(hash))
	return nil
}

func (f *fakeUsers) setFail(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

// forget drops a token behind the Service's back, as another node's
// revocation or the store's own expiry sweep would.
func (f *fakeUsers) forget(token string) {
	h := sha256.Sum256([]byte(token))
	f.mu.Lock()
	delete(f.tokens, string(h[:]))
	f.mu.Unlock()
}

func (f *fakeUsers) lookups() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokenLookup
}

func (f *fakeUsers) hasToken(token string) bool {
	h := sha256.Sum256([]byte(token))
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.tokens[string(h[:])]
	return ok
}

const (
	adminID       = "root"
	adminPassword = "admin-password"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is a Service over a fake store, with a clock the test moves.
type fixture struct {
	svc   *Service
	users *fakeUsers
	now   time.Time
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = 4 // bcrypt.MinCost: fast tests
	}
	if cfg.Admins == nil {
		cfg.Admins = map[string]string{adminID: adminPassword}
	}
	fx := &fixture{users: newFakeUsers(), now: t0}
	svc, err := New(cfg, fx.users)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	svc.now = func() time.Time { return fx.now }
	fx.svc = svc
	return fx
}

func (fx *fixture) register(t *testing.T, id string) string {
	t.Helper()
	token, err := fx.svc.Register(context.Background(), id, "password-of-"+id, "")
	if err != nil {
		t.Fatalf("Register(%q): %v", id, err)
	}
	return token
}

func TestNew(t *testing.T) {
	tests := map[string]struct {
		cfg     Config
		wantErr error // nil: New succeeds; errAny: any error
	}{
		"defaults":             {cfg: Config{}},
		"admin":                {cfg: Config{Admins: map[string]string{"root": "violet-8mq"}}},
		"lowest bcrypt cost":   {cfg: Config{BcryptCost: bcrypt.MinCost}},
		"highest bcrypt cost":  {cfg: Config{BcryptCost: bcrypt.MaxCost}},
		"admin id uppercase":   {cfg: Config{Admins: map[string]string{"Root": "violet-8mq"}}, wantErr: ErrInvalidID},
		"admin id empty":       {cfg: Config{Admins: map[string]string{"": "violet-8mq"}}, wantErr: ErrInvalidID},
		"admin id with slash":  {cfg: Config{Admins: map[string]string{"root/x": "violet-8mq"}}, wantErr: ErrInvalidID},
		"admin password short": {cfg: Config{Admins: map[string]string{"root": "1234567"}}, wantErr: ErrWeakPassword},
		"admin password empty": {cfg: Config{Admins: map[string]string{"root": ""}}, wantErr: ErrWeakPassword},
		"bcrypt cost too low":  {cfg: Config{BcryptCost: bcrypt.MinCost - 1}, wantErr: errAny},
		"bcrypt cost too high": {cfg: Config{BcryptCost: bcrypt.MaxCost + 1}, wantErr: errAny},
		"bcrypt cost negative": {cfg: Config{BcryptCost: -1}, wantErr: errAny},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			svc, err := New(tc.cfg, newFakeUsers())
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("New: %v", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("New: err = %v, want %v", err, tc.wantErr)
			case tc.wantErr != nil && svc != nil:
				t.Fatalf("New returned a Service with error %v", err)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestNewDefaults(t *testing.T) {
	svc, err := New(Config{TokenTTL: -time.Hour, CacheTTL: -time.Second}, newFakeUsers())
	if err != nil {
		t.Fatal(err)
	}
	if svc.cfg.TokenTTL != 30*24*time.Hour || svc.cfg.BcryptCost != bcrypt.DefaultCost || svc.cfg.CacheTTL != 30*time.Second {
		t.Errorf("defaults: TokenTTL %v, BcryptCost %d, CacheTTL %v; want 720h, 10, 30s",
			svc.cfg.TokenTTL, svc.cfg.BcryptCost, svc.cfg.CacheTTL)
	}
	if svc.OpenRegistration() {
		t.Error("OpenRegistration() = true by default")
	}
}

func TestRegister(t *testing.T) {
	storeDown := fmt.Errorf("create user: %w", storage.ErrUnavailable)
	tests := map[string]struct {
		id, password, name string
		fail               error // the store's error
		wantErr            error
		wantName           string
	}{
		"user":                    {id: "alice", password: "correct horse", name: "Alice A.", wantName: "Alice A."},
		"name defaults to id":     {id: "bob", password: "violet-8mq", wantName: "bob"},
		"password of 10 bytes":    {id: "bob", password: "violet-8mq", wantName: "bob"},
		"password of 72 bytes":    {id: "bob", password: strings.Repeat("p", 72), wantName: "bob"},
		"password of 10 runes":    {id: "bob", password: "éèêëàâäôöû", wantName: "bob"}, // 20 bytes
		"password of 9 bytes":     {id: "bob", password: "violet-8m", wantErr: ErrPasswordLength},
		"password of 9 runes":     {id: "bob", password: "éèêëàâäôö", wantErr: ErrPasswordLength}, // 18 bytes
		"password 10 spaces":      {id: "bob", password: "          ", wantErr: ErrPasswordBlank},
		"password common":         {id: "bob", password: "Password123", wantErr: ErrPasswordCommon},
		"name of 128 runes":       {id: "bob", password: "violet-8mq", name: strings.Repeat("é", 128), wantName: strings.Repeat("é", 128)},
		"id of 64":                {id: strings.Repeat("a", 64), password: "violet-8mq", wantName: strings.Repeat("a", 64)},
		"id empty":                {id: "", password: "violet-8mq", wantErr: ErrInvalidID},
		"id uppercase":            {id: "Alice", password: "violet-8mq", wantErr: ErrInvalidID},
		"id of 65":                {id: strings.Repeat("a", 65), password: "violet-8mq", wantErr: ErrInvalidID},
		"id with slash":           {id: "alice/phone", password: "violet-8mq", wantErr: ErrInvalidID},
		"password of 8 bytes":     {id: "bob", password: "1234-abc", wantErr: ErrWeakPassword},
		"password of 73 bytes":    {id: "bob", password: strings.Repeat("p", 73), wantErr: ErrWeakPassword},
		"password of 37 runes":    {id: "bob", password: strings.Repeat("é", 37), wantErr: ErrWeakPassword}, // 74 bytes
		"password empty":          {id: "bob", password: "", wantErr: ErrWeakPassword},
		"name of 129 runes":       {id: "bob", password: "violet-8mq", name: strings.Repeat("é", 129), wantErr: ErrInvalidName},
		"name invalid UTF-8":      {id: "bob", password: "violet-8mq", name: "b\xffb", wantErr: ErrInvalidName},
		"name with bidi override": {id: "bob", password: "violet-8mq", name: "Bob\u202e (Parley Support)", wantName: "Bob (Parley Support)"},
		"name of invisibles only": {id: "bob", password: "violet-8mq", name: "\u200b\u202e", wantErr: ErrInvalidName},
		"admin id":                {id: adminID, password: "violet-8mq", wantErr: ErrExists},
		"taken id":                {id: "carol", password: "violet-8mq", wantErr: ErrExists},
		"store failure":           {id: "bob", password: "violet-8mq", fail: storeDown, wantErr: storage.ErrUnavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			fx := newFixture(t, Config{TokenTTL: time.Hour})
			fx.register(t, "carol")
			fx.users.setFail(tc.fail)
			token, err := fx.svc.Register(context.Background(), tc.id, tc.password, tc.name)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || token != "" {
					t.Fatalf("Register = %q, %v; want error %v", token, err, tc.wantErr)
				}
				if tc.fail != nil && errors.Is(err, ErrExists) {
					t.Fatalf("Register: a store failure reported as a taken id: %v", err)
				}
				if _, stored := fx.users.users[tc.id]; stored && tc.id != "carol" {
					t.Errorf("Register failed but stored user %q", tc.id)
				}
				return
			}
			if err != nil {
				t.Fatalf("Register: %v", err)
			}
			u := fx.users.users[tc.id]
			if u.ID != tc.id || u.Name != tc.wantName {
				t.Errorf("stored user %q named %q, want %q named %q", u.ID, u.Name, tc.id, tc.wantName)
			}
			if u.PasswordHash == tc.password || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(tc.password)) != nil {
				t.Errorf("stored password hash %q does not verify the password", u.PasswordHash)
			}
			if cost, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil || cost != 4 {
				t.Errorf("bcrypt cost = %d, %v; want the configured 4", cost, err)
			}
			checkIssued(t, fx, token, tc.id, t0.Add(time.Hour))
			if user, err := fx.svc.TokenUser(context.Background(), token); err != nil || user != tc.id {
				t.Errorf("TokenUser(registration token) = %q, %v; want %q", user, err, tc.id)
			}
		})
	}
}

// checkIssued checks that the store holds token only as its SHA-256 hash, for
// user, until expires.
func checkIssued(t *testing.T, fx *fixture, token, user string, expires time.Time) {
	t.Helper()
	if !strings.HasPrefix(token, "pt_") || len(token) != 46 {
		t.Errorf("token %q: want pt_ and 43 characters of base64url", token)
	}
	h := sha256.Sum256([]byte(token))
	fx.users.mu.Lock()
	defer fx.users.mu.Unlock()
	stored, ok := fx.users.tokens[string(h[:])]
	if !ok || stored.user != user || !stored.expires.Equal(expires) {
		t.Errorf("stored token = %+v, %v; want user %q until %v", stored, ok, user, expires)
	}
	if _, plain := fx.users.tokens[token]; plain {
		t.Error("token stored in clear")
	}
}

func TestRegisterTwice(t *testing.T) {
	fx := newFixture(t, Config{})
	fx.register(t, "alice")
	if _, err := fx.svc.Register(context.Background(), "alice", "another-password", ""); !errors.Is(err, ErrExists) {
		t.Fatalf("second Register: err = %v, want ErrExists", err)
	}
}

func TestLogin(t *testing.T) {
	storeDown := fmt.Errorf("get user: %w", storage.ErrUnavailable)
	tests := map[string]struct {
		id, password string
		fail         error
		wantErr      error
	}{
		"right password":          {id: "alice", password: "password-of-alice"},
		"wrong password":          {id: "alice", password: "password-of-bob", wantErr: ErrBadCredentials},
		"empty password":          {id: "alice", password: "", wantErr: ErrBadCredentials},
		"password prefix":         {id: "alice", password: "password-of-alic", wantErr: ErrBadCredentials},
		"password different case": {id: "alice", password: "PASSWORD-OF-ALICE", wantErr: ErrBadCredentials},
		"unknown user":            {id: "mallory", password: "password-of-alice", wantErr: ErrBadCredentials},
		"admin, not a store user": {id: adminID, password: adminPassword, wantErr: ErrBadCredentials},
		"store failure":           {id: "alice", password: "password-of-alice", fail: storeDown, wantErr: storage.ErrUnavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			fx := newFixture(t, Config{TokenTTL: 2 * time.Hour})
			first := fx.register(t, "alice")
			fx.register(t, "bob")
			fx.now = t0.Add(time.Minute)
			fx.users.setFail(tc.fail)
			token, err := fx.svc.Login(context.Background(), tc.id, tc.password)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || token != "" {
					t.Fatalf("Login = %q, %v; want error %v", token, err, tc.wantErr)
				}
				if tc.fail != nil && errors.Is(err, ErrBadCredentials) {
					t.Fatalf("Login: a store failure reported as bad credentials: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			if token == first {
				t.Error("Login returned the registration token again")
			}
			checkIssued(t, fx, token, tc.id, t0.Add(time.Minute+2*time.Hour))
			if user, err := fx.svc.TokenUser(context.Background(), token); err != nil || user != tc.id {
				t.Errorf("TokenUser(login token) = %q, %v; want %q", user, err, tc.id)
			}
			if user, err := fx.svc.TokenUser(context.Background(), first); err != nil || user != tc.id {
				t.Errorf("TokenUser(registration token) after Login = %q, %v; want %q", user, err, tc.id)
			}
		})
	}
}

func TestIssueToken(t *testing.T) {
	fx := newFixture(t, Config{})
	fx.register(t, "alice")
	token, err := fx.svc.IssueToken(context.Background(), "alice")
	if err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	checkIssued(t, fx, token, "alice", t0.Add(30*24*time.Hour))
	if _, err := fx.svc.IssueToken(context.Background(), "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("IssueToken(unknown user): err = %v, want the store's ErrNotFound", err)
	}
}

func TestTokenUser(t *testing.T) {
	const ttl = time.Hour
	tests := map[string]struct {
		token       func(alice string) string
		at          time.Duration // since the token was issued
		fail        error
		want        string
		wantErr     error
		wantLookups int // store lookups
	}{
		"valid":                {token: same, want: "alice", wantLookups: 1},
		"just before expiry":   {token: same, at: ttl - time.Nanosecond, want: "alice", wantLookups: 1},
		"expired":              {token: same, at: ttl, wantErr: ErrBadCredentials, wantLookups: 1},
		"long expired":         {token: same, at: 24 * ttl, wantErr: ErrBadCredentials, wantLookups: 1},
		"unknown":              {token: func(string) string { return "pt_" + strings.Repeat("A", 43) }, wantErr: ErrBadCredentials, wantLookups: 1},
		"another token's tail": {token: func(a string) string { return a[:len(a)-1] }, wantErr: ErrBadCredentials, wantLookups: 1},
		"10 characters":        {token: fixed(strings.Repeat("x", 10)), wantErr: ErrBadCredentials, wantLookups: 1},
		"128 characters":       {token: fixed(strings.Repeat("x", 128)), wantErr: ErrBadCredentials, wantLookups: 1},
		"empty":                {token: fixed(""), wantErr: ErrBadCredentials},
		"9 characters":         {token: fixed(strings.Repeat("x", 9)), wantErr: ErrBadCredentials},
		"129 characters":       {token: fixed(strings.Repeat("x", 129)), wantErr: ErrBadCredentials},
		"token padded to 129":  {token: func(a string) string { return a + strings.Repeat("x", 129-len(a)) }, wantErr: ErrBadCredentials},
		"store failure":        {token: same, fail: storage.ErrUnavailable, wantErr: storage.ErrUnavailable, wantLookups: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			fx := newFixture(t, Config{TokenTTL: ttl})
			alice := fx.register(t, "alice")
			fx.now = t0.Add(tc.at)
			fx.users.setFail(tc.fail)
			user, err := fx.svc.TokenUser(context.Background(), tc.token(alice))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || user != "" {
					t.Fatalf("TokenUser = %q, %v; want error %v", user, err, tc.wantErr)
				}
				if tc.fail != nil && errors.Is(err, ErrBadCredentials) {
					t.Fatalf("TokenUser: a store failure reported as bad credentials: %v", err)
				}
			} else if err != nil || user != tc.want {
				t.Fatalf("TokenUser = %q, %v; want %q", user, err, tc.want)
			}
			if got := fx.users.lookups(); got != tc.wantLookups {
				t.Errorf("store lookups = %d, want %d", got, tc.wantLookups)
			}
		})
	}
}

func same(token string) string { return token }

func fixed(s string) func(string) string { return func(string) string { return s } }

// TestTokenUserCache checks that a verified token is served from memory,
// even after the store forgets it, until CacheTTL has passed.
func TestTokenUserCache(t *testing.T) {
	const cacheTTL = 10 * time.Second
	ctx := context.Background()
	fx := newFixture(t, Config{CacheTTL: cacheTTL})
	token := fx.register(t, "alice")

	if user, err := fx.svc.TokenUser(ctx, token); err != nil || user != "alice" {
		t.Fatalf("TokenUser = %q, %v", user, err)
	}
	fx.users.forget(token)
	fx.users.setFail(storage.ErrUnavailable) // the cache spares the store entirely
	fx.now = t0.Add(cacheTTL - time.Nanosecond)
	if user, err := fx.svc.TokenUser(ctx, token); err != nil || user != "alice" {
		t.Fatalf("TokenUser just before CacheTTL = %q, %v; want alice from the cache", user, err)
	}
	if n := fx.users.lookups(); n != 1 {
		t.Fatalf("store lookups = %d, want 1: the second answer should come from the cache", n)
	}

	fx.users.setFail(nil)
	fx.now = t0.Add(cacheTTL)
	if user, err := fx.svc.TokenUser(ctx, token); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("TokenUser at CacheTTL = %q, %v; want ErrBadCredentials from the store", user, err)
	}
	if n := fx.users.lookups(); n != 2 {
		t.Fatalf("store lookups = %d, want 2", n)
	}
}

// TestTokenUserCacheRefresh checks that a token looked up again after
// CacheTTL is cached anew from that time.
func TestTokenUserCacheRefresh(t *testing.T) {
	const cacheTTL = 10 * time.Second
	ctx := context.Background()
	fx := newFixture(t, Config{CacheTTL: cacheTTL})
	token := fx.register(t, "alice")
	for i, at := range []time.Duration{0, cacheTTL / 2, cacheTTL, cacheTTL + cacheTTL/2, 2*cacheTTL - 1} {
		fx.now = t0.Add(at)
		if user, err := fx.svc.TokenUser(ctx, token); err != nil || user != "alice" {
			t.Fatalf("lookup %d: TokenUser = %q, %v", i, user, err)
		}
	}
	if n := fx.users.lookups(); n != 2 {
		t.Errorf("store lookups = %d, want 2 (at 0 and at CacheTTL)", n)
	}
}

func TestTokenUserCacheBounded(t *testing.T) {
	fx := newFixture(t, Config{})
	token := fx.register(t, "alice")
	for i := range maxCache {
		fx.svc.cache[[32]byte{byte(i), byte(i >> 8), byte(i >> 16)}] = cached{user: "x", expires: t0.Add(time.Hour)}
	}
	if user, err := fx.svc.TokenUser(context.Background(), token); err != nil || user != "alice" {
		t.Fatalf("TokenUser = %q, %v", user, err)
	}
	if n := len(fx.svc.cache); n != 1 {
		t.Errorf("cache holds %d tokens after overflowing, want only the new one", n)
	}
}

func TestRevoke(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, Config{})
	token := fx.register(t, "alice")
	other, err := fx.svc.Login(ctx, "alice", "password-of-alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.TokenUser(ctx, token); err != nil { // now cached
		t.Fatal(err)
	}
	if err := fx.svc.Revoke(ctx, token); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if fx.users.hasToken(token) {
		t.Error("Revoke left the token in the store")
	}
	if user, err := fx.svc.TokenUser(ctx, token); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("TokenUser after Revoke = %q, %v; want ErrBadCredentials at once, not from the cache", user, err)
	}
	if user, err := fx.svc.TokenUser(ctx, other); err != nil || user != "alice" {
		t.Errorf("TokenUser(another token of the user) = %q, %v; want alice", user, err)
	}
	if err := fx.svc.Revoke(ctx, token); err != nil {
		t.Errorf("Revoke of a revoked token: %v", err)
	}
	if err := fx.svc.Revoke(ctx, "pt_unknown"); err != nil {
		t.Errorf("Revoke of an unknown token: %v", err)
	}

	fx.users.setFail(storage.ErrUnavailable)
	if err := fx.svc.Revoke(ctx, other); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Revoke with the store down: err = %v, want ErrUnavailable", err)
	}
}

func TestAuthenticate(t *testing.T) {
	tests := map[string]struct {
		user      string
		secret    func(alice, bob string) string
		fail      error
		wantAdmin bool
		wantErr   error
	}{
		"admin":                        {user: adminID, secret: password(adminPassword), wantAdmin: true},
		"admin, wrong password":        {user: adminID, secret: password("admin-passwore"), wantErr: ErrBadCredentials},
		"admin, password prefix":       {user: adminID, secret: password("admin-passwor"), wantErr: ErrBadCredentials},
		"admin, empty password":        {user: adminID, secret: password(""), wantErr: ErrBadCredentials},
		"admin, a user's token":        {user: adminID, secret: func(a, _ string) string { return a }, wantErr: ErrBadCredentials},
		"admin, store down":            {user: adminID, secret: password(adminPassword), fail: storage.ErrUnavailable, wantAdmin: true},
		"user, own token":              {user: "alice", secret: func(a, _ string) string { return a }},
		"user, another user's token":   {user: "alice", secret: func(_, b string) string { return b }, wantErr: ErrBadCredentials},
		"user, unknown token":          {user: "alice", secret: password("pt_" + strings.Repeat("A", 43)), wantErr: ErrBadCredentials},
		"user, empty secret":           {user: "alice", secret: password(""), wantErr: ErrBadCredentials},
		"user, own password":           {user: "alice", secret: password("password-of-alice"), wantErr: ErrBadCredentials},
		"user, admin password":         {user: "alice", secret: password(adminPassword), wantErr: ErrBadCredentials},
		"invalid user id, valid token": {user: "Alice", secret: func(a, _ string) string { return a }, wantErr: ErrBadCredentials},
		"empty user id, valid token":   {user: "", secret: func(a, _ string) string { return a }, wantErr: ErrBadCredentials},
		"unknown user, a token":        {user: "mallory", secret: func(a, _ string) string { return a }, wantErr: ErrBadCredentials},
		"user, store down":             {user: "alice", secret: func(a, _ string) string { return a }, fail: storage.ErrUnavailable, wantErr: storage.ErrUnavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			fx := newFixture(t, Config{})
			alice, bob := fx.register(t, "alice"), fx.register(t, "bob")
			fx.users.setFail(tc.fail)
			admin, err := fx.svc.Authenticate(context.Background(), tc.user, tc.secret(alice, bob), "mqtt", "192.0.2.1:1234")
			if admin != tc.wantAdmin {
				t.Errorf("Authenticate: admin = %v, want %v", admin, tc.wantAdmin)
			}
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Authenticate: %v", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("Authenticate: err = %v, want %v", err, tc.wantErr)
			case tc.fail != nil && errors.Is(err, ErrBadCredentials):
				// The MQTT hook answers "server unavailable", not "bad
				// credentials", so that clients retry instead of logging out.
				t.Fatalf("Authenticate: a store failure reported as bad credentials: %v", err)
			}
		})
	}
}

func password(s string) func(string, string) string { return func(string, string) string { return s } }

func TestAdmins(t *testing.T) {
	fx := newFixture(t, Config{OpenRegistration: true})
	tests := map[string]struct {
		id, password       string
		isAdmin, checkPass bool
	}{
		"admin":                 {adminID, adminPassword, true, true},
		"admin, wrong password": {adminID, "nope", true, false},
		"not an admin":          {"alice", adminPassword, false, false},
		"empty":                 {"", "", false, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := fx.svc.IsAdmin(tc.id); got != tc.isAdmin {
				t.Errorf("IsAdmin(%q) = %v, want %v", tc.id, got, tc.isAdmin)
			}
			if got := fx.svc.CheckAdmin(tc.id, tc.password); got != tc.checkPass {
				t.Errorf("CheckAdmin(%q, %q) = %v, want %v", tc.id, tc.password, got, tc.checkPass)
			}
		})
	}
	if !fx.svc.OpenRegistration() {
		t.Error("OpenRegistration() = false with Config.OpenRegistration set")
	}
}

// TestConcurrentTokens exercises the cache from many goroutines; run with
// -race.
func TestConcurrentTokens(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, Config{})
	tokens := []string{fx.register(t, "alice"), fx.register(t, "bob")}
	users := []string{"alice", "bob"}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				k := (g + i) % 2
				if g == 0 && i%50 == 0 {
					if err := fx.svc.Revoke(ctx, "pt_not-a-real-token"); err != nil {
						errs <- err
						return
					}
				}
				if user, err := fx.svc.TokenUser(ctx, tokens[k]); err != nil || user != users[k] {
					errs <- fmt.Errorf("TokenUser = %q, %v; want %q", user, err, users[k])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
