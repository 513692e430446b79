package auth

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// The methods of Users for sessions, on fakeUsers (auth_test.go), which
// the other tests use: these tests use memUsers, a fake that keeps what
// sessions need (creation times on the test's clock, last uses).

func (f *fakeUsers) UserTokens(context.Context, string, time.Time) ([]storage.Token, error) {
	return nil, errors.ErrUnsupported
}

func (f *fakeUsers) TouchTokens(context.Context, []storage.TokenUse, time.Duration, time.Duration) error {
	return nil
}

func (f *fakeUsers) DeleteUserTokens(context.Context, string, []byte) ([][]byte, error) {
	return nil, errors.ErrUnsupported
}

func (f *fakeUsers) SetPassword(context.Context, string, string, []byte) ([][]byte, error) {
	return nil, errors.ErrUnsupported
}

func (f *fakeUsers) DeleteUser(context.Context, string, time.Time) ([][]byte, error) {
	return nil, errors.ErrUnsupported
}

// memUsers is an in-memory Users that follows the storage.Users contract
// (storage/storetest), with creation times from the test's clock.
type memUsers struct {
	clock func() time.Time

	mu      sync.Mutex // guards the fields below
	users   map[string]storage.User
	tokens  map[string]*storage.Token // by hash
	touches int                       // uses written by TouchTokens
}

func newMemUsers(clock func() time.Time) *memUsers {
	return &memUsers{clock: clock, users: map[string]storage.User{}, tokens: map[string]*storage.Token{}}
}

func (m *memUsers) CreateUser(_ context.Context, u storage.User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[u.ID]; ok {
		return storage.ErrExists
	}
	m.users[u.ID] = u
	return nil
}

func (m *memUsers) GetUser(_ context.Context, id string) (storage.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[id]
	if !ok {
		return storage.User{}, storage.ErrNotFound
	}
	return u, nil
}

func (m *memUsers) UsersLike(_ context.Context, skeleton string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id := range m.users {
		if protocol.IDSkeleton(id) == skeleton {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func (m *memUsers) CreateToken(_ context.Context, hash []byte, user string, expires time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.users[user]; !ok || u.Deleted() {
		return storage.ErrNotFound
	}
	now := m.clock()
	m.tokens[string(hash)] = &storage.Token{Hash: hash, User: user, CreatedAt: now, LastUsedAt: now, ExpiresAt: expires}
	return nil
}

func (m *memUsers) TokenUser(_ context.Context, hash []byte, now time.Time) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[string(hash)]
	if !ok || !now.Before(t.ExpiresAt) {
		return "", storage.ErrNotFound
	}
	return t.User, nil
}

func (m *memUsers) DeleteToken(_ context.Context, hash []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tokens, string(hash))
	return nil
}

func (m *memUsers) UserTokens(_ context.Context, user string, now time.Time) ([]storage.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []storage.Token
	for _, t := range m.tokens {
		if t.User == user && now.Before(t.ExpiresAt) {
			out = append(out, *t)
		}
	}
	slices.SortFunc(out, func(a, b storage.Token) int { return b.LastUsedAt.Compare(a.LastUsedAt) })
	return out, nil
}

func (m *memUsers) TouchTokens(_ context.Context, uses []storage.TokenUse, idle, max time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range uses {
		if err := u.Check(); err != nil {
			return err
		}
	}
	for _, u := range uses {
		t, ok := m.tokens[string(u.Hash)]
		if !ok || !u.At.Before(t.ExpiresAt) || u.At.Before(t.LastUsedAt) {
			continue
		}
		m.touches++
		t.LastUsedAt, t.LastAddr, t.LastAgent, t.LastClient = u.At, u.Addr, u.Agent, u.Client
		t.ExpiresAt = u.At.Add(idle)
		if limit := t.CreatedAt.Add(max); limit.Before(t.ExpiresAt) {
			t.ExpiresAt = limit
		}
	}
	return nil
}

func (m *memUsers) deleteTokens(user string, keep []byte) [][]byte {
	var out [][]byte
	for k, t := range m.tokens {
		if t.User == user && !bytes.Equal(t.Hash, keep) {
			out = append(out, t.Hash)
			delete(m.tokens, k)
		}
	}
	return out
}

func (m *memUsers) DeleteUserTokens(_ context.Context, user string, keep []byte) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.deleteTokens(user, keep), nil
}

func (m *memUsers) SetPassword(_ context.Context, user, hash string, keep []byte) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[user]
	if !ok || u.Deleted() {
		return nil, storage.ErrNotFound
	}
	u.PasswordHash = hash
	m.users[user] = u
	return m.deleteTokens(user, keep), nil
}

func (m *memUsers) DeleteUser(_ context.Context, user string, at time.Time) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[user]
	if !ok || u.Deleted() {
		return nil, storage.ErrNotFound
	}
	m.users[user] = storage.User{ID: user, Name: storage.DeletedUserName, CreatedAt: u.CreatedAt, DeletedAt: at}
	return m.deleteTokens(user, nil), nil
}

// sessionFixture is a Service over memUsers, with a clock the test moves
// and the revocations it reported.
type sessionFixture struct {
	svc   *Service
	users *memUsers
	now   time.Time

	mu      sync.Mutex
	revoked []Revocation
}

func newSessionFixture(t *testing.T, cfg Config) *sessionFixture {
	t.Helper()
	cfg.BcryptCost = 4
	fx := &sessionFixture{now: t0}
	fx.users = newMemUsers(func() time.Time { return fx.now })
	svc, err := New(cfg, fx.users)
	if err != nil {
		t.Fatal(err)
	}
	svc.now = func() time.Time { return fx.now }
	svc.OnRevoke(func(r Revocation) {
		fx.mu.Lock()
		fx.revoked = append(fx.revoked, r)
		fx.mu.Unlock()
	})
	fx.svc = svc
	return fx
}

func (fx *sessionFixture) register(t *testing.T, id string) string {
	t.Helper()
	token, err := fx.svc.Register(context.Background(), id, "password-of-"+id, "")
	if err != nil {
		t.Fatalf("Register(%s): %v", id, err)
	}
	return token
}

func (fx *sessionFixture) login(t *testing.T, id, password string) string {
	t.Helper()
	token, err := fx.svc.Login(context.Background(), id, password)
	if err != nil {
		t.Fatalf("Login(%s): %v", id, err)
	}
	return token
}

// lastRevocation returns what OnRevoke reported last.
func (fx *sessionFixture) lastRevocation(t *testing.T) Revocation {
	t.Helper()
	fx.mu.Lock()
	defer fx.mu.Unlock()
	if len(fx.revoked) == 0 {
		t.Fatal("nothing revoked")
	}
	return fx.revoked[len(fx.revoked)-1]
}

func hashOf(token string) []byte { h := HashToken(token); return h[:] }

func sameHashes(a [][]byte, b ...[]byte) bool {
	key := func(hs [][]byte) []string {
		out := make([]string, len(hs))
		for i, h := range hs {
			out[i] = string(h)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// TestSlidingExpiry: a token lives TokenTTL after its last use, never more
// than TokenMax after it was issued; using it is what extends it.
func TestSlidingExpiry(t *testing.T) {
	const day = 24 * time.Hour
	ctx := context.Background()
	fx := newSessionFixture(t, Config{TokenTTL: 30 * day, TokenMax: 90 * day, CacheTTL: time.Second})
	used := fx.register(t, "alice")
	unused := fx.login(t, "alice", "password-of-alice")
	valid := func(token string, at time.Duration) bool {
		t.Helper()
		fx.now = t0.Add(at)
		user, err := fx.svc.TokenUser(ctx, token)
		if err != nil && !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("TokenUser: %v", err)
		}
		return err == nil && user == "alice"
	}
	use := func(token string, at time.Duration) {
		t.Helper()
		if !valid(token, at) {
			t.Fatalf("token expired at day %v, before it was used", at/day)
		}
		fx.svc.NoteUse(HashToken(token), Use{Addr: "192.0.2.7", Agent: "test"})
		if err := fx.svc.FlushUses(ctx); err != nil {
			t.Fatalf("FlushUses: %v", err)
		}
	}

	// Unused, a token lives TokenTTL.
	if !valid(unused, 30*day-time.Second) || valid(unused, 30*day) {
		t.Errorf("an unused token: want valid until day 30, not at day 30")
	}
	// Used at day 20, it lives until day 50.
	use(used, 20*day)
	if !valid(used, 50*day-time.Second) {
		t.Error("a token used at day 20 expired before day 50")
	}
	if valid(used, 50*day+time.Second) {
		t.Error("a token used at day 20 and not after is valid after day 50")
	}
	// Used every 20 days it goes on, but not past TokenMax.
	fx2 := newSessionFixture(t, Config{TokenTTL: 30 * day, TokenMax: 90 * day, CacheTTL: time.Second})
	fx = fx2
	daily := fx.register(t, "alice")
	for d := 20 * day; d < 90*day; d += 20 * day {
		use(daily, d)
	}
	if !valid(daily, 90*day-time.Second) {
		t.Error("a token used every 20 days expired before TokenMax")
	}
	if valid(daily, 90*day) {
		t.Error("a token used every 20 days is valid at TokenMax")
	}
	ss, err := fx.svc.Sessions(ctx, "alice")
	if err != nil || len(ss) != 0 {
		t.Errorf("Sessions after TokenMax = %+v, %v; want none", ss, err)
	}
}

// TestNoteUse: a token's uses are written at most once a minute, with
// where they came from, made storable.
func TestNoteUse(t *testing.T) {
	ctx := context.Background()
	fx := newSessionFixture(t, Config{})
	token := fx.register(t, "alice")
	h := HashToken(token)
	long := string(bytes.Repeat([]byte("é"), 200)) // 400 bytes
	for i := range 10 {
		fx.now = t0.Add(time.Duration(i) * 5 * time.Second) // 10 uses in 45s
		fx.svc.NoteUse(h, Use{Addr: "192.0.2.1", Agent: "bad\x00agent " + long, Client: "alice/phone"})
	}
	if err := fx.svc.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	if fx.users.touches != 1 {
		t.Errorf("uses written = %d, want 1 for 10 uses within a minute", fx.users.touches)
	}
	ss, err := fx.svc.Sessions(ctx, "alice")
	if err != nil || len(ss) != 1 {
		t.Fatalf("Sessions = %+v, %v", ss, err)
	}
	s := ss[0]
	if s.ID != SessionID(h[:]) || len(s.ID) != 24 || !s.LastUsedAt.Equal(t0) || s.LastAddr != "192.0.2.1" ||
		s.LastClient != "alice/phone" || len(s.LastAgent) > maxUseText || bytes.IndexByte([]byte(s.LastAgent), 0) >= 0 {
		t.Errorf("session = %+v", s)
	}
	fx.now = t0.Add(time.Minute)
	fx.svc.NoteUse(h, Use{Addr: "192.0.2.2"})
	if err := fx.svc.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	if fx.users.touches != 2 {
		t.Errorf("uses written = %d, want 2 after a minute", fx.users.touches)
	}
	if err := fx.svc.FlushUses(ctx); err != nil || fx.users.touches != 2 {
		t.Errorf("FlushUses with nothing pending: %v, %d writes", err, fx.users.touches)
	}
}

func TestRevokeSessions(t *testing.T) {
	ctx := context.Background()
	fx := newSessionFixture(t, Config{})
	phone := fx.register(t, "alice")
	laptop := fx.login(t, "alice", "password-of-alice")
	web := fx.login(t, "alice", "password-of-alice")
	bob := fx.register(t, "bob")
	for _, tok := range []string{phone, laptop, web, bob} {
		if _, err := fx.svc.TokenUser(ctx, tok); err != nil { // cached now
			t.Fatal(err)
		}
	}

	// One session, by id.
	if err := fx.svc.RevokeSession(ctx, "alice", SessionID(hashOf(laptop))); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	if r := fx.lastRevocation(t); r.User != "alice" || !sameHashes(r.Tokens, hashOf(laptop)) || r.Deleted {
		t.Errorf("revocation reported = %+v", r)
	}
	if _, err := fx.svc.TokenUser(ctx, laptop); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("the revoked token: %v, want ErrBadCredentials at once", err)
	}
	if err := fx.svc.RevokeSession(ctx, "alice", SessionID(hashOf(bob))); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RevokeSession of another user's session: %v, want ErrNotFound", err)
	}
	if _, err := fx.svc.TokenUser(ctx, bob); err != nil {
		t.Errorf("bob's token after alice tried to revoke it: %v", err)
	}

	// Every other session: the current one stays.
	n, err := fx.svc.RevokeOthers(ctx, "alice", web)
	if err != nil || n != 1 {
		t.Fatalf("RevokeOthers = %d, %v; want 1", n, err)
	}
	if r := fx.lastRevocation(t); !sameHashes(r.Tokens, hashOf(phone)) {
		t.Errorf("RevokeOthers reported %d tokens, want the phone's", len(r.Tokens))
	}
	if _, err := fx.svc.TokenUser(ctx, phone); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("the phone's token after RevokeOthers: %v", err)
	}
	if user, err := fx.svc.TokenUser(ctx, web); err != nil || user != "alice" {
		t.Errorf("the current token after RevokeOthers: %q, %v", user, err)
	}

	// Revoke (sign out) reports the token too.
	if err := fx.svc.Revoke(ctx, web); err != nil {
		t.Fatal(err)
	}
	if r := fx.lastRevocation(t); !sameHashes(r.Tokens, hashOf(web)) {
		t.Errorf("Revoke reported %+v", r)
	}
	// RevokeAll: operators.
	fx.login(t, "bob", "password-of-bob")
	if n, err := fx.svc.RevokeAll(ctx, "bob"); err != nil || n != 2 {
		t.Errorf("RevokeAll(bob) = %d, %v; want 2", n, err)
	}
}

func TestChangePassword(t *testing.T) {
	ctx := context.Background()
	fx := newSessionFixture(t, Config{})
	current := fx.register(t, "alice")
	other := fx.login(t, "alice", "password-of-alice")
	tests := map[string]struct {
		old, new string
		want     error
	}{
		"wrong old password": {"nope-nope-nope", "a-new-password", ErrBadCredentials},
		"new too short":      {"password-of-alice", "short", ErrWeakPassword},
		"new too long":       {"password-of-alice", string(bytes.Repeat([]byte("x"), 73)), ErrWeakPassword},
		"new all spaces":     {"password-of-alice", "            ", ErrPasswordBlank},
		"new common":         {"password-of-alice", "QwertyUiop", ErrPasswordCommon},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := fx.svc.ChangePassword(ctx, "alice", tc.old, tc.new, current); !errors.Is(err, tc.want) {
				t.Fatalf("ChangePassword: %v, want %v", err, tc.want)
			}
			if _, err := fx.svc.TokenUser(ctx, other); err != nil {
				t.Fatalf("a refused change revoked a session: %v", err)
			}
		})
	}
	n, err := fx.svc.ChangePassword(ctx, "alice", "password-of-alice", "a-new-password", current)
	if err != nil || n != 1 {
		t.Fatalf("ChangePassword = %d, %v; want 1 session ended", n, err)
	}
	if r := fx.lastRevocation(t); !sameHashes(r.Tokens, hashOf(other)) {
		t.Errorf("ChangePassword reported %+v", r)
	}
	if _, err := fx.svc.TokenUser(ctx, other); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("the other session after a password change: %v", err)
	}
	if _, err := fx.svc.TokenUser(ctx, current); err != nil {
		t.Errorf("the current session after a password change: %v", err)
	}
	if _, err := fx.svc.Login(ctx, "alice", "password-of-alice"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("Login with the old password: %v", err)
	}
	fx.login(t, "alice", "a-new-password")

	// Operators: every session ends.
	if n, err := fx.svc.SetPassword(ctx, "alice", "set-by-operator"); err != nil || n != 2 {
		t.Errorf("SetPassword = %d, %v; want 2", n, err)
	}
	fx.login(t, "alice", "set-by-operator")
	if _, err := fx.svc.SetPassword(ctx, "nobody", "set-by-operator"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetPassword(nobody): %v", err)
	}
}

func TestDeleteUser(t *testing.T) {
	ctx := context.Background()
	fx := newSessionFixture(t, Config{})
	a1 := fx.register(t, "alice")
	a2 := fx.login(t, "alice", "password-of-alice")
	if _, err := fx.svc.TokenUser(ctx, a1); err != nil {
		t.Fatal(err)
	}
	if err := fx.svc.VerifyPassword(ctx, "alice", "wrong-password"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("VerifyPassword(wrong): %v", err)
	}
	if err := fx.svc.VerifyPassword(ctx, "alice", "password-of-alice"); err != nil {
		t.Errorf("VerifyPassword: %v", err)
	}
	if err := fx.svc.DeleteUser(ctx, "alice"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if r := fx.lastRevocation(t); r.User != "alice" || !r.Deleted || !sameHashes(r.Tokens, hashOf(a1), hashOf(a2)) {
		t.Errorf("DeleteUser reported %+v", r)
	}
	if _, err := fx.svc.TokenUser(ctx, a1); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("a deleted user's token: %v", err)
	}
	if _, err := fx.svc.Login(ctx, "alice", "password-of-alice"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("Login of a deleted user: %v, want ErrBadCredentials", err)
	}
	if err := fx.svc.VerifyPassword(ctx, "alice", "password-of-alice"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("VerifyPassword of a deleted user: %v", err)
	}
	if _, err := fx.svc.Register(ctx, "alice", "password-of-alice", ""); !errors.Is(err, ErrExists) {
		t.Errorf("Register with a deleted user's id: %v, want ErrExists", err)
	}
	if err := fx.svc.DeleteUser(ctx, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second DeleteUser: %v", err)
	}
}

func TestNewTokenMax(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg     Config
		wantMax time.Duration
		wantErr bool
	}{
		"defaults":              {Config{}, 90 * 24 * time.Hour, false},
		"ttl above the default": {Config{TokenTTL: 100 * 24 * time.Hour}, 100 * 24 * time.Hour, false},
		"max below ttl":         {Config{TokenTTL: 2 * time.Hour, TokenMax: time.Hour}, 0, true},
	} {
		t.Run(name, func(t *testing.T) {
			svc, err := New(tc.cfg, newMemUsers(time.Now))
			if tc.wantErr {
				if err == nil {
					t.Fatal("New accepted TokenMax below TokenTTL")
				}
				return
			}
			if err != nil || svc.cfg.TokenMax != tc.wantMax {
				t.Fatalf("New: %v, TokenMax %v; want %v", err, svc.cfg.TokenMax, tc.wantMax)
			}
		})
	}
}
