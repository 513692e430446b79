// Package auth provides Parley's accounts: registration with hashed
// passwords, random access tokens stored as hashes, administrators named in
// the configuration, and the checks the MQTT hooks and the HTTP API make.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Errors returned by Service. The HTTP API maps each to a status code.
var (
	ErrInvalidID          = errors.New("user id must match ^[a-z0-9][a-z0-9_.-]{0,63}$")
	ErrWeakPassword       = errors.New("password too weak") // what CheckPassword refuses: ErrPasswordLength, ErrPasswordBlank, ErrPasswordCommon
	ErrInvalidName        = errors.New("name must have 1 to 128 visible characters")
	ErrNameLikeID         = errors.New("name reads as another user's id") // see Skeleton
	ErrExists             = errors.New("user id is taken")
	ErrBadCredentials     = errors.New("bad credentials")
	ErrRegistrationClosed = errors.New("registration is closed")
)

// Users is the part of the store accounts live in.
type Users interface {
	CreateUser(ctx context.Context, u storage.User) error
	GetUser(ctx context.Context, id string) (storage.User, error)
	UsersLike(ctx context.Context, skeleton string) ([]string, error)
	CreateToken(ctx context.Context, hash []byte, user string, expires time.Time) error
	TokenUser(ctx context.Context, hash []byte, now time.Time) (string, error)
	DeleteToken(ctx context.Context, hash []byte) error
	// Sessions and account lifecycle (sessions.go).
	UserTokens(ctx context.Context, user string, now time.Time) ([]storage.Token, error)
	TouchTokens(ctx context.Context, uses []storage.TokenUse, idle, max time.Duration) error
	DeleteUserTokens(ctx context.Context, user string, keep []byte) ([][]byte, error)
	SetPassword(ctx context.Context, user, passwordHash string, keep []byte) ([][]byte, error)
	DeleteUser(ctx context.Context, user string, at time.Time) ([][]byte, error)
}

// Config configures accounts.
type Config struct {
	// TokenTTL is how long an access token lives unused: each use (NoteUse)
	// extends it to this long after the use, up to TokenMax after the
	// token was issued. Default 30 days.
	TokenTTL time.Duration
	// TokenMax is the longest an access token lives, however much it is
	// used; at least TokenTTL. Default 90 days (TokenTTL if longer).
	TokenMax time.Duration
	// OpenRegistration lets anyone create an account through the API. When
	// false only administrators can.
	OpenRegistration bool
	// Admins maps administrator ids to their passwords: a bcrypt hash
	// ("$2a$", "$2b$", "$2y$"), an argon2id hash ("$argon2id$v=19$…", PHC
	// format), or, for development, the password itself (8 bytes or more).
	Admins map[string]string
	// BcryptCost is the password hashing cost. Default bcrypt.DefaultCost (10).
	BcryptCost int
	// CacheTTL is how long a verified token is remembered, sparing the
	// database on reconnect storms; a revoked token may work this long. Default 30s.
	CacheTTL time.Duration
	// Throttle throttles password checks (administrators' anywhere, users'
	// at login) per user name and per client address.
	Throttle ThrottleConfig
	// Log receives the audit line of each failed credential check (user,
	// address, listener, outcome; never the secret). Default: discarded.
	Log *slog.Logger
}

// Service checks and issues credentials.
type Service struct {
	cfg   Config
	users Users
	now   func() time.Time

	// Credential checks (credentials.go).
	admins      map[string]adminSecret
	throttle    *Throttle
	log         *slog.Logger
	metrics     authMetrics
	decoy       adminSecret                       // what non-administrators' names are checked with
	decoyOf     string                            // the administrator whose secret decoy is
	dummyHash   []byte                            // what unknown users' passwords are compared with
	compareHash func(hash, password []byte) error // bcrypt's; tests count its calls

	mu    sync.Mutex // guards cache
	cache map[[32]byte]cached

	sessions sessionState // sessions.go
}

type cached struct {
	user    string
	expires time.Time
}

const maxCache = 100_000

// New returns a Service over users.
func New(cfg Config, users Users) (*Service, error) {
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 30 * 24 * time.Hour
	}
	if cfg.TokenMax <= 0 {
		cfg.TokenMax = max(90*24*time.Hour, cfg.TokenTTL)
	}
	if cfg.TokenMax < cfg.TokenTTL {
		return nil, fmt.Errorf("auth: token maximum %v is shorter than the token lifetime %v", cfg.TokenMax, cfg.TokenTTL)
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	if cfg.BcryptCost < bcrypt.MinCost || cfg.BcryptCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("auth: bcrypt cost %d out of range", cfg.BcryptCost)
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	s := &Service{cfg: cfg, users: users, now: time.Now, cache: map[[32]byte]cached{},
		admins: map[string]adminSecret{}, throttle: NewThrottle(cfg.Throttle), log: orDiscard(cfg.Log),
		metrics: newAuthMetrics(), dummyHash: newDummyHash(cfg.BcryptCost), compareHash: bcrypt.CompareHashAndPassword}
	s.throttle.now = func() time.Time { return s.now() }
	for id, pw := range cfg.Admins {
		if !protocol.ValidID(id) {
			return nil, fmt.Errorf("auth: admin %q: %w", id, ErrInvalidID)
		}
		sec, err := parseAdminSecret(pw)
		if err != nil {
			return nil, fmt.Errorf("auth: admin %q: %w", id, err)
		}
		if sec.plain != nil {
			s.log.Warn("administrator password given in plaintext: configure a bcrypt or argon2id hash in production (docs/security.md)", "user", id)
		}
		s.admins[id] = sec
		if s.decoy.verifier() == "" || id < s.decoyOf {
			s.decoy, s.decoyOf = sec, id
		}
	}
	return s, nil
}

// IsAdmin reports whether id names an administrator.
func (s *Service) IsAdmin(id string) bool {
	_, ok := s.admins[id]
	return ok
}

// CheckAdmin reports whether id and password are an administrator's. It is
// CheckAdminFrom with no address: throttled by user name only.
func (s *Service) CheckAdmin(id, password string) bool {
	return s.CheckAdminFrom(id, password, "", "") == nil
}

// OpenRegistration reports whether anyone may register.
func (s *Service) OpenRegistration() bool { return s.cfg.OpenRegistration }

// Register creates a user and returns a first token.
func (s *Service) Register(ctx context.Context, id, password, name string) (string, error) {
	if !protocol.ValidID(id) {
		return "", ErrInvalidID
	}
	if err := CheckPassword(password); err != nil {
		return "", err
	}
	if name == "" {
		name = id
	} else if clean, ok := protocol.CleanName(name); ok {
		name = clean // no bidi controls, invisible or control characters
	} else {
		return "", ErrInvalidName
	}
	if s.IsAdmin(id) {
		return "", ErrExists
	}
	if err := s.checkNameLikeID(ctx, id, name); err != nil {
		return "", err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cfg.BcryptCost)
	if err != nil {
		return "", fmt.Errorf("register: %w", err)
	}
	if err := s.users.CreateUser(ctx, storage.User{ID: id, Name: name, PasswordHash: string(hash)}); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return "", ErrExists
		}
		return "", fmt.Errorf("register: %w", err)
	}
	return s.issue(ctx, id)
}

// checkNameLikeID refuses a display name that reads as the id of another
// user or of an administrator ("аlice" in Cyrillic, "a1ice", "ALICE" for
// user mallory): a name is shown where an id would be, and one that passes
// for someone else's id impersonates them. A name that reads as the user's
// own id is fine.
func (s *Service) checkNameLikeID(ctx context.Context, id, name string) error {
	sk := Skeleton(name)
	if sk == protocol.IDSkeleton(id) {
		return nil
	}
	for admin := range s.admins {
		if protocol.IDSkeleton(admin) == sk {
			return fmt.Errorf("%w: an administrator's", ErrNameLikeID)
		}
	}
	like, err := s.users.UsersLike(ctx, sk)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	for _, other := range like {
		if other != id {
			return fmt.Errorf("%w: %s", ErrNameLikeID, other)
		}
	}
	return nil
}

// Login checks a password and returns a new token. It is LoginFrom with no
// address: throttled by user name only.
func (s *Service) Login(ctx context.Context, id, password string) (string, error) {
	return s.LoginFrom(ctx, id, password, "", "")
}

// IssueToken returns a fresh token for an existing user (for administrators'
// bulk provisioning).
func (s *Service) IssueToken(ctx context.Context, id string) (string, error) {
	return s.issue(ctx, id)
}

func (s *Service) issue(ctx context.Context, id string) (string, error) {
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	token := "pt_" + base64.RawURLEncoding.EncodeToString(secret[:])
	h := sha256.Sum256([]byte(token))
	if err := s.users.CreateToken(ctx, h[:], id, s.now().Add(s.cfg.TokenTTL)); err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	return token, nil
}

// TokenUser returns the user a token belongs to, or ErrBadCredentials.
func (s *Service) TokenUser(ctx context.Context, token string) (string, error) {
	if len(token) < 10 || len(token) > 128 {
		return "", ErrBadCredentials
	}
	h := sha256.Sum256([]byte(token))
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[h]
	s.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.user, nil
	}
	user, err := s.users.TokenUser(ctx, h[:], now)
	if errors.Is(err, storage.ErrNotFound) {
		return "", ErrBadCredentials
	}
	if err != nil {
		return "", fmt.Errorf("check token: %w", err)
	}
	s.mu.Lock()
	if len(s.cache) >= maxCache {
		clear(s.cache)
	}
	s.cache[h] = cached{user: user, expires: now.Add(s.cfg.CacheTTL)}
	s.mu.Unlock()
	return user, nil
}

// Revoke deletes a token; the connections it authenticated end (OnRevoke).
func (s *Service) Revoke(ctx context.Context, token string) error {
	h := sha256.Sum256([]byte(token))
	s.mu.Lock()
	delete(s.cache, h)
	s.mu.Unlock()
	if err := s.users.DeleteToken(ctx, h[:]); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	s.revoked(Revocation{Tokens: [][]byte{h[:]}})
	return nil
}

// Authenticate checks MQTT credentials of a client at addr ("host:port")
// on listener: an administrator's password (throttled: CheckAdminFrom), or
// a user's token. It returns ErrBadCredentials when they do not match, a
// *ThrottledError when an administrator's name or the address is locked
// out. Tokens are not throttled: 256 random bits cannot be guessed, and a
// lockout per user would let anyone keep a user's devices offline; their
// failures are logged and counted all the same.
func (s *Service) Authenticate(ctx context.Context, user, secret, listener, addr string) (admin bool, err error) {
	if s.IsAdmin(user) {
		if err := s.CheckAdminFrom(user, secret, listener, addr); err != nil {
			return false, err
		}
		return true, nil
	}
	owner, err := "", error(ErrBadCredentials)
	if protocol.ValidID(user) {
		owner, err = s.TokenUser(ctx, secret)
	}
	switch {
	case err == nil && owner == user:
		return false, nil
	case err == nil, errors.Is(err, ErrBadCredentials):
		s.metrics.failures.WithLabelValues(listenerLabel(listener), OutcomeBadToken).Inc()
		s.log.Info("sign-in failed", "user", logUser(user), "address", addr, "listener", listenerLabel(listener),
			"outcome", OutcomeBadToken)
		return false, ErrBadCredentials
	}
	return false, err
}
