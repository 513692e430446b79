package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/parleychat/parley/storage"
)

// Sessions: a user's access tokens, each a session (a device, a browser)
// the user can see and end, and the account's lifecycle: password change
// and deletion. Ending a session ends the MQTT connections authenticated
// with its token at once, on every node: the Service reports each
// revocation (OnRevoke) and the broker does the rest.
//
// Token expiry slides: a token lives Config.TokenTTL after its last use,
// and never longer than Config.TokenMax after it was issued. Using a token
// is what extends it, so there is no refresh token and no refresh call:
// NoteUse records uses (at most once a minute per token and node) and
// FlushUses writes them, sliding the expiry in the store.

// touchEvery is how often a use of the same token is written at most.
const touchEvery = time.Minute

// maxPendingUses bounds the uses waiting for FlushUses; past it uses are
// dropped (a token's last use is then a little older than it could be).
const maxPendingUses = 100_000

// maxUseText bounds the address, agent and client id kept of a use.
const maxUseText = 256

// Session is one access token of a user, as its owner may see it. Hash is
// the token's SHA-256, as the store keeps it: it names the token to the
// broker and the store and is never shown to anyone; ID is what clients
// see.
type Session struct {
	ID         string
	Hash       []byte
	CreatedAt  time.Time
	LastUsedAt time.Time
	ExpiresAt  time.Time
	// LastAddr, LastAgent and LastClient say where the last recorded use
	// came from: an address, an HTTP User-Agent, an MQTT client id.
	LastAddr, LastAgent, LastClient string
}

// SessionID names a token to its owner without revealing it: the first 12
// bytes of its hash, in hex.
func SessionID(hash []byte) string { return hex.EncodeToString(hash[:min(len(hash), 12)]) }

// HashToken returns a token's SHA-256, the form the store and the broker
// know it by.
func HashToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// Revocation says which tokens a Service revoked, for ending the
// connections authenticated with them.
type Revocation struct {
	// User owns the tokens; "" when not known (Revoke).
	User string
	// Tokens are the hashes of the revoked tokens.
	Tokens [][]byte
	// Deleted: the account was deleted. Every connection of User ends,
	// whatever its token.
	Deleted bool
}

// Use says where a token was used from.
type Use struct {
	Addr   string // the client's address (no port)
	Agent  string // an HTTP client's User-Agent
	Client string // an MQTT client id
}

// sessionState is the Service's state for sessions. Its zero value is
// ready.
type sessionState struct {
	onRevoke atomic.Pointer[func(Revocation)]

	mu      sync.Mutex                    // guards the fields below
	noted   map[[32]byte]time.Time        // tokens whose use was queued lately, when
	pending map[[32]byte]storage.TokenUse // uses FlushUses writes next
}

// OnRevoke sets fn to be called, after the store has it, with every
// revocation made through this Service: Revoke, RevokeSession,
// RevokeOthers, RevokeAll, ChangePassword, SetPassword, DeleteUser. The
// broker ends the connections authenticated with the tokens, here and on
// the other nodes. Set it before the Service is used.
func (s *Service) OnRevoke(fn func(Revocation)) { s.sessions.onRevoke.Store(&fn) }

// revoked forgets revoked tokens here and reports them.
func (s *Service) revoked(r Revocation) {
	s.Forget(r.Tokens)
	if r.Deleted {
		s.ForgetUser(r.User)
	}
	if fn := s.sessions.onRevoke.Load(); fn != nil && (len(r.Tokens) > 0 || r.Deleted) {
		(*fn)(r)
	}
}

// Forget drops tokens from the cache of verified tokens (and from the
// uses waiting to be written): they were revoked, here or on another
// node.
func (s *Service) Forget(hashes [][]byte) {
	if len(hashes) == 0 {
		return
	}
	s.mu.Lock()
	for _, h := range hashes {
		if len(h) == sha256.Size {
			delete(s.cache, [32]byte(h))
		}
	}
	s.mu.Unlock()
	s.sessions.mu.Lock()
	for _, h := range hashes {
		if len(h) == sha256.Size {
			delete(s.sessions.pending, [32]byte(h))
		}
	}
	s.sessions.mu.Unlock()
}

// ForgetUser drops every cached token of user: the account was deleted.
func (s *Service) ForgetUser(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, c := range s.cache {
		if c.user == user {
			delete(s.cache, h)
		}
	}
}

// Sessions returns user's unexpired sessions, the most recently used
// first.
func (s *Service) Sessions(ctx context.Context, user string) ([]Session, error) {
	ts, err := s.users.UserTokens(ctx, user, s.now())
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	out := make([]Session, len(ts))
	for i, t := range ts {
		out[i] = Session{ID: SessionID(t.Hash), Hash: t.Hash, CreatedAt: t.CreatedAt, LastUsedAt: t.LastUsedAt,
			ExpiresAt: t.ExpiresAt, LastAddr: t.LastAddr, LastAgent: t.LastAgent, LastClient: t.LastClient}
	}
	return out, nil
}

// RevokeSession ends user's session id. It returns an error wrapping
// storage.ErrNotFound when the user has no such session.
func (s *Service) RevokeSession(ctx context.Context, user, id string) error {
	ss, err := s.Sessions(ctx, user)
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	for _, ses := range ss {
		if ses.ID != id {
			continue
		}
		if err := s.users.DeleteToken(ctx, ses.Hash); err != nil {
			return fmt.Errorf("revoke session: %w", err)
		}
		s.revoked(Revocation{User: user, Tokens: [][]byte{ses.Hash}})
		return nil
	}
	return fmt.Errorf("revoke session %q: %w", id, storage.ErrNotFound)
}

// RevokeOthers ends every session of user but the one of token (signing
// out everywhere else) and returns how many it ended.
func (s *Service) RevokeOthers(ctx context.Context, user, token string) (int, error) {
	h := HashToken(token)
	revoked, err := s.users.DeleteUserTokens(ctx, user, h[:])
	if err != nil {
		return 0, fmt.Errorf("revoke other sessions: %w", err)
	}
	s.revoked(Revocation{User: user, Tokens: revoked})
	return len(revoked), nil
}

// RevokeAll ends every session of user (operators: parley users revoke)
// and returns how many it ended.
func (s *Service) RevokeAll(ctx context.Context, user string) (int, error) {
	revoked, err := s.users.DeleteUserTokens(ctx, user, nil)
	if err != nil {
		return 0, fmt.Errorf("revoke sessions: %w", err)
	}
	s.revoked(Revocation{User: user, Tokens: revoked})
	return len(revoked), nil
}

// VerifyPassword checks user's password, for the operations that ask for
// it again (ChangePassword, deleting the account): ErrBadCredentials when
// it is wrong or the user unknown or deleted.
func (s *Service) VerifyPassword(ctx context.Context, user, password string) error {
	u, err := s.users.GetUser(ctx, user)
	if errors.Is(err, storage.ErrNotFound) {
		return ErrBadCredentials
	}
	if err != nil {
		return fmt.Errorf("verify password: %w", err)
	}
	if u.Deleted() || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return ErrBadCredentials
	}
	return nil
}

// ChangePassword replaces user's password after checking the old one
// (ErrBadCredentials), ends every other session of the user (token's
// stays) and returns how many it ended. An ErrWeakPassword (CheckPassword's
// reason) for a new password Register would refuse.
func (s *Service) ChangePassword(ctx context.Context, user, oldPassword, newPassword, token string) (int, error) {
	if err := CheckPassword(newPassword); err != nil {
		return 0, err
	}
	if err := s.VerifyPassword(ctx, user, oldPassword); err != nil {
		return 0, err
	}
	h := HashToken(token)
	return s.setPassword(ctx, user, newPassword, h[:])
}

// SetPassword replaces user's password without the old one (operators:
// parley users passwd) and ends every session of the user.
func (s *Service) SetPassword(ctx context.Context, user, password string) (int, error) {
	if err := CheckPassword(password); err != nil {
		return 0, err
	}
	return s.setPassword(ctx, user, password, nil)
}

func (s *Service) setPassword(ctx context.Context, user, password string, keep []byte) (int, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cfg.BcryptCost)
	if err != nil {
		return 0, fmt.Errorf("set password: %w", err)
	}
	revoked, err := s.users.SetPassword(ctx, user, string(hash), keep)
	if err != nil {
		return 0, fmt.Errorf("set password: %w", err)
	}
	s.revoked(Revocation{User: user, Tokens: revoked})
	return len(revoked), nil
}

// DeleteUser deletes user's account and what the store keeps of it (see
// storage.Users.DeleteUser; the caller ends its group memberships first,
// so that each group records the departure) and ends every connection of
// the user. Its id stays taken; signing in fails from then on. An error
// wrapping storage.ErrNotFound for an unknown or deleted user.
func (s *Service) DeleteUser(ctx context.Context, user string) error {
	revoked, err := s.users.DeleteUser(ctx, user, s.now())
	if err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	s.revoked(Revocation{User: user, Tokens: revoked, Deleted: true})
	return nil
}

// NoteUse records a use of the token with this hash, made now from u, for
// the next FlushUses: at most one every minute per token is kept. Call it
// for tokens that authenticated a request or a connection. It does no I/O.
func (s *Service) NoteUse(hash [32]byte, u Use) {
	now := s.now()
	ss := &s.sessions
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if last, ok := ss.noted[hash]; ok && now.Sub(last) < touchEvery && !now.Before(last) {
		return
	}
	if ss.noted == nil || len(ss.noted) >= maxCache {
		ss.noted = map[[32]byte]time.Time{}
	}
	if ss.pending == nil {
		ss.pending = map[[32]byte]storage.TokenUse{}
	}
	if len(ss.pending) >= maxPendingUses {
		return
	}
	ss.noted[hash] = now
	ss.pending[hash] = storage.TokenUse{Hash: hash[:], At: now, Addr: useText(u.Addr), Agent: useText(u.Agent),
		Client: useText(u.Client)}
}

// useText makes s storable: valid UTF-8 without NULs, at most maxUseText
// bytes.
func useText(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "")
	if len(s) <= maxUseText {
		return s
	}
	cut := maxUseText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// FlushUses writes the uses NoteUse recorded, sliding the tokens' expiry
// (see Config.TokenTTL). Uses that cannot be written are dropped: the
// error says why.
func (s *Service) FlushUses(ctx context.Context) error {
	ss := &s.sessions
	ss.mu.Lock()
	pending := ss.pending
	ss.pending = nil
	ss.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	uses := make([]storage.TokenUse, 0, len(pending))
	for _, u := range pending {
		uses = append(uses, u)
	}
	if err := s.users.TouchTokens(ctx, uses, s.cfg.TokenTTL, s.cfg.TokenMax); err != nil {
		return fmt.Errorf("record token uses: %w", err)
	}
	return nil
}
