// Package auth provides Parley's accounts: registration with hashed
// passwords, random access tokens stored as hashes, administrators named in
// the configuration, and the checks the MQTT hooks and the HTTP API make.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Errors returned by Service. The HTTP API maps each to a status code.
var (
	ErrInvalidID          = errors.New("user id must match ^[a-z0-9][a-z0-9_.-]{0,63}$")
	ErrWeakPassword       = errors.New("password must be 8 to 72 bytes")
	ErrInvalidName        = errors.New("name must be at most 128 characters")
	ErrExists             = errors.New("user id is taken")
	ErrBadCredentials     = errors.New("bad credentials")
	ErrRegistrationClosed = errors.New("registration is closed")
)

// Users is the part of the store accounts live in.
type Users interface {
	CreateUser(ctx context.Context, u storage.User) error
	GetUser(ctx context.Context, id string) (storage.User, error)
	CreateToken(ctx context.Context, hash []byte, user string, expires time.Time) error
	TokenUser(ctx context.Context, hash []byte, now time.Time) (string, error)
	DeleteToken(ctx context.Context, hash []byte) error
}

// Config configures accounts.
type Config struct {
	// TokenTTL is how long an access token lives. Default 30 days.
	TokenTTL time.Duration
	// OpenRegistration lets anyone create an account through the API. When
	// false only administrators can.
	OpenRegistration bool
	// Admins maps administrator ids to their passwords.
	Admins map[string]string
	// BcryptCost is the password hashing cost. Default bcrypt.DefaultCost (10).
	BcryptCost int
	// CacheTTL is how long a verified token is remembered, sparing the
	// database on reconnect storms; a revoked token may work this long. Default 30s.
	CacheTTL time.Duration
}

// Service checks and issues credentials.
type Service struct {
	cfg   Config
	users Users
	now   func() time.Time

	mu    sync.Mutex // guards cache
	cache map[[32]byte]cached
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
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	if cfg.BcryptCost < bcrypt.MinCost || cfg.BcryptCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("auth: bcrypt cost %d out of range", cfg.BcryptCost)
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	for id, pw := range cfg.Admins {
		if !protocol.ValidID(id) {
			return nil, fmt.Errorf("auth: admin %q: %w", id, ErrInvalidID)
		}
		if len(pw) < 8 {
			return nil, fmt.Errorf("auth: admin %q: %w", id, ErrWeakPassword)
		}
	}
	return &Service{cfg: cfg, users: users, now: time.Now, cache: map[[32]byte]cached{}}, nil
}

// IsAdmin reports whether id names an administrator.
func (s *Service) IsAdmin(id string) bool {
	_, ok := s.cfg.Admins[id]
	return ok
}

// CheckAdmin reports whether id and password are an administrator's.
func (s *Service) CheckAdmin(id, password string) bool {
	pw, ok := s.cfg.Admins[id]
	return ok && subtle.ConstantTimeCompare([]byte(pw), []byte(password)) == 1
}

// OpenRegistration reports whether anyone may register.
func (s *Service) OpenRegistration() bool { return s.cfg.OpenRegistration }

// Register creates a user and returns a first token.
func (s *Service) Register(ctx context.Context, id, password, name string) (string, error) {
	if !protocol.ValidID(id) {
		return "", ErrInvalidID
	}
	if len(password) < 8 || len(password) > 72 {
		return "", ErrWeakPassword
	}
	if utf8.RuneCountInString(name) > 128 || !utf8.ValidString(name) {
		return "", ErrInvalidName
	}
	if name == "" {
		name = id
	}
	if s.IsAdmin(id) {
		return "", ErrExists
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

// Login checks a password and returns a new token.
func (s *Service) Login(ctx context.Context, id, password string) (string, error) {
	u, err := s.users.GetUser(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return "", ErrBadCredentials
	}
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return "", ErrBadCredentials
	}
	return s.issue(ctx, id)
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

// Revoke deletes a token.
func (s *Service) Revoke(ctx context.Context, token string) error {
	h := sha256.Sum256([]byte(token))
	s.mu.Lock()
	delete(s.cache, h)
	s.mu.Unlock()
	if err := s.users.DeleteToken(ctx, h[:]); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

// Authenticate checks MQTT credentials: an administrator's password, or a
// user's token. It returns ErrBadCredentials when they do not match.
func (s *Service) Authenticate(ctx context.Context, user, secret string) (admin bool, err error) {
	if s.IsAdmin(user) {
		if s.CheckAdmin(user, secret) {
			return true, nil
		}
		return false, ErrBadCredentials
	}
	if !protocol.ValidID(user) {
		return false, ErrBadCredentials
	}
	owner, err := s.TokenUser(ctx, secret)
	if err != nil {
		return false, err
	}
	if owner != user {
		return false, ErrBadCredentials
	}
	return false, nil
}
