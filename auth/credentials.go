package auth

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// ErrThrottled is matched (errors.Is) by the error of a check refused,
// unchecked, because its user name or client address is locked out: a
// *ThrottledError.
var ErrThrottled = errors.New("too many failed attempts")

// ThrottledError refuses a credential check without making it: the user
// name or the client address failed too often (ThrottleConfig).
type ThrottledError struct {
	// Wait is how long the lockout lasts from now.
	Wait time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed attempts, retry in %v", e.Wait.Round(time.Second))
}

// Is makes a ThrottledError match ErrThrottled.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// RetryAfter returns Wait. Callers that do not import auth (the MQTT hook)
// find it with errors.As on an interface.
func (e *ThrottledError) RetryAfter() time.Duration { return e.Wait }

// Outcomes of failed credential checks, in the audit log and the
// parley_auth_failures_total metric.
const (
	OutcomeBadPassword = "bad_password" // an administrator's or a user's password was wrong
	OutcomeUnknownUser = "unknown_user" // a login for a user id that has no account (or is no user id)
	OutcomeBadToken    = "bad_token"    // an MQTT token that is not the user's (unknown, expired, revoked, another's)
)

// authMetrics are the credential checks' collectors; Collectors returns
// them for the node to register.
type authMetrics struct {
	failures  *prometheus.CounterVec
	throttled *prometheus.CounterVec
}

func newAuthMetrics() authMetrics {
	return authMetrics{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_auth_failures_total",
			Help: "Failed credential checks, by listener (mqtt, mqtts, ws, http, admin) and outcome (bad_password, unknown_user, bad_token)."},
			[]string{"listener", "outcome"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_auth_throttled_total",
			Help: "Password checks refused without being made: the user name or client address was locked out, by listener."},
			[]string{"listener"}),
	}
}

// Collectors returns the metrics of credential checks: failures by
// listener and outcome, refused (throttled) checks, and the user names and
// addresses locked out now. The node registers them.
func (s *Service) Collectors() []prometheus.Collector {
	locked := func(which string, pick func(users, addrs int) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_auth_locked",
			Help:        "User names (key=user) and client addresses (key=address) whose password checks are locked out now.",
			ConstLabels: prometheus.Labels{"key": which}},
			func() float64 { return float64(pick(s.throttle.Locked())) })
	}
	return []prometheus.Collector{s.metrics.failures, s.metrics.throttled,
		locked("user", func(u, _ int) int { return u }), locked("address", func(_, a int) int { return a })}
}

// adminSecret is how an administrator's password is verified: a bcrypt or
// argon2id hash, or the password itself (development).
type adminSecret struct {
	plain  []byte
	bcrypt []byte
	argon  *argon2idHash
}

type argon2idHash struct {
	time, memory uint32
	threads      uint8
	salt, key    []byte
}

// parseAdminSecret reads an administrator's configured password: "$2a$",
// "$2b$" or "$2y$" is a bcrypt hash, "$argon2id$" an argon2id hash in the
// PHC format (what the argon2 command prints with -e), anything else the
// password itself.
func parseAdminSecret(s string) (adminSecret, error) {
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return adminSecret{}, fmt.Errorf("not a valid bcrypt hash: %w", err)
		}
		return adminSecret{bcrypt: []byte(s)}, nil
	case strings.HasPrefix(s, "$argon2id$"):
		h, err := parseArgon2id(s)
		if err != nil {
			return adminSecret{}, fmt.Errorf("not a valid argon2id hash: %w", err)
		}
		return adminSecret{argon: h}, nil
	case strings.HasPrefix(s, "$argon2"), strings.HasPrefix(s, "$2"):
		return adminSecret{}, errors.New("unsupported hash: use bcrypt ($2a$, $2b$, $2y$) or argon2id ($argon2id$)")
	case len(s) < 8:
		// Operators' configuration, not CheckPassword's rule for users.
		return adminSecret{}, fmt.Errorf("%w: a plaintext administrator password needs at least 8 bytes", ErrWeakPassword)
	}
	return adminSecret{plain: []byte(s)}, nil
}

// parseArgon2id reads $argon2id$v=19$m=65536,t=3,p=4$salt$key (base64,
// unpadded).
func parseArgon2id(s string) (*argon2idHash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return nil, fmt.Errorf("want $argon2id$v=%d$m=…,t=…,p=…$salt$hash", argon2.Version)
	}
	var h argon2idHash
	var threads uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.memory, &h.time, &threads); err != nil {
		return nil, fmt.Errorf("parameters %q: %w", parts[3], err)
	}
	if h.time < 1 || threads < 1 || threads > 255 || h.memory < 8*threads {
		return nil, fmt.Errorf("parameters %q out of range", parts[3])
	}
	h.threads = uint8(threads)
	var err error
	if h.salt, err = decodeB64(parts[4]); err != nil || len(h.salt) < 8 {
		return nil, fmt.Errorf("salt: want at least 8 bytes of base64 (%v)", err)
	}
	if h.key, err = decodeB64(parts[5]); err != nil || len(h.key) < 16 {
		return nil, fmt.Errorf("hash: want at least 16 bytes of base64 (%v)", err)
	}
	return &h, nil
}

func decodeB64(s string) ([]byte, error) {
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

func (a adminSecret) verify(s *Service, password string) bool {
	switch {
	case a.bcrypt != nil:
		return s.compareHash(a.bcrypt, []byte(password)) == nil
	case a.argon != nil:
		h := a.argon
		key := argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
		return subtle.ConstantTimeCompare(key, h.key) == 1
	}
	return subtle.ConstantTimeCompare(a.plain, []byte(password)) == 1
}

// newDummyHash returns a bcrypt hash at cost, of no known password, that a
// password for an unknown user (or administrator) is compared with, so that
// the answer takes as long as for a known one. bcrypt does the whole work
// of the hash's cost whatever its salt and digest, so a fixed pair serves.
func newDummyHash(cost int) []byte {
	return fmt.Appendf(nil, "$2a$%02d$%s", cost, "LBq/lVZRAdbq57gwehuHmO60tnmRhXZ98L6P0u.rv3bSx4DIQa.xi")
}

// LoginFrom is Login for a client at addr ("host:port") on listener (for
// the throttle, the audit log and the metrics): a throttled attempt is
// refused with a *ThrottledError before the password is looked at.
func (s *Service) LoginFrom(ctx context.Context, id, password, listener, addr string) (string, error) {
	check, err := s.begin(id, listener, addr)
	if err != nil {
		return "", err
	}
	var u storage.User
	if protocol.ValidID(id) {
		u, err = s.users.GetUser(ctx, id)
	} else {
		err = storage.ErrNotFound
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// As long as a known user's check: no answer tells which ids exist.
		_ = s.compareHash(s.dummyHash, []byte(password))
		s.failed(check, id, listener, addr, OutcomeUnknownUser)
		return "", ErrBadCredentials
	case err != nil:
		check.Abandon()
		return "", fmt.Errorf("login: %w", err)
	case u.PasswordHash == "":
		// A deleted account (its hash is gone): answered as an unknown id,
		// after as long.
		_ = s.compareHash(s.dummyHash, []byte(password))
		s.failed(check, id, listener, addr, OutcomeUnknownUser)
		return "", ErrBadCredentials
	}
	if s.compareHash([]byte(u.PasswordHash), []byte(password)) != nil {
		s.failed(check, id, listener, addr, OutcomeBadPassword)
		return "", ErrBadCredentials
	}
	check.Succeed()
	return s.issue(ctx, id)
}

// CheckAdminFrom checks an administrator's password for a client at addr
// on listener: nil, ErrBadCredentials (id is no administrator, or the
// password is wrong), or a *ThrottledError without a check.
func (s *Service) CheckAdminFrom(id, password, listener, addr string) error {
	check, err := s.begin(id, listener, addr)
	if err != nil {
		return err
	}
	sec, ok := s.admins[id]
	if !ok {
		// As long as an administrator's check (one of theirs, its answer
		// ignored): no answer tells who the administrators are.
		_ = s.decoy.verify(s, password)
		s.failed(check, id, listener, addr, OutcomeBadPassword)
		return ErrBadCredentials
	}
	if !sec.verify(s, password) {
		s.failed(check, id, listener, addr, OutcomeBadPassword)
		return ErrBadCredentials
	}
	check.Succeed()
	return nil
}

// IsUser reports whether id is a user's account (administrators are not).
func (s *Service) IsUser(ctx context.Context, id string) (bool, error) {
	if !protocol.ValidID(id) {
		return false, nil
	}
	_, err := s.users.GetUser(ctx, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("is user: %w", err)
	}
	return true, nil
}

// begin asks the throttle for a password check of user from addr.
func (s *Service) begin(user, listener, addr string) (Check, error) {
	check, wait := s.throttle.Begin(user, addr)
	if wait > 0 {
		listener = listenerLabel(listener)
		s.metrics.throttled.WithLabelValues(listener).Inc()
		// Debug: a guesser gets one of these per attempt, at any rate.
		s.log.Debug("sign-in throttled", "user", logUser(user), "address", addr, "listener", listener,
			"outcome", "throttled", "retry_after", wait)
		return Check{}, &ThrottledError{Wait: wait}
	}
	return check, nil
}

// failed ends a failed check: it counts it, and writes its audit line (at
// warn when it starts a lockout).
func (s *Service) failed(check Check, user, listener, addr, outcome string) {
	listener = listenerLabel(listener)
	s.metrics.failures.WithLabelValues(listener, outcome).Inc()
	attrs := []any{"user", logUser(user), "address", addr, "listener", listener, "outcome", outcome}
	if wait := check.Fail(); wait > 0 {
		s.log.Warn("sign-in failed, locked out", append(attrs, "locked_for", wait)...)
		return
	}
	s.log.Info("sign-in failed", attrs...)
}

func listenerLabel(l string) string {
	if l == "" {
		return "unknown"
	}
	return l
}

// logUser bounds a user name for the log: it comes from the client, and
// may be a megabyte of anything.
func logUser(u string) string {
	const maxLogged = 64
	if len(u) <= maxLogged {
		return u
	}
	return strings.ToValidUTF8(u[:maxLogged], "") + "…"
}

// orDiscard returns l, or a logger that discards.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// verifier names the kind of secret: "bcrypt", "argon2id", "plain", or ""
// for none.
func (a adminSecret) verifier() string {
	switch {
	case a.bcrypt != nil:
		return "bcrypt"
	case a.argon != nil:
		return "argon2id"
	case a.plain != nil:
		return "plain"
	}
	return ""
}

// CheckAdminPassword reports whether s is usable as an administrator's
// configured password (Config.Admins): a valid bcrypt or argon2id hash, or
// a plaintext password of 8 bytes or more.
func CheckAdminPassword(s string) error {
	_, err := parseAdminSecret(s)
	return err
}
