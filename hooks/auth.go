package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parleychat/parley/protocol"
)

// Authenticator checks MQTT credentials. auth.Service implements it.
type Authenticator interface {
	// Authenticate returns whether user is an administrator, or an error:
	// auth.ErrBadCredentials-like errors for which badCredentials is true,
	// an error with a RetryAfter() time.Duration method when the attempt
	// was refused unchecked (throttled), anything else when the check
	// itself failed. listener and addr (the client's "host:port") say
	// where the attempt comes from.
	Authenticate(ctx context.Context, user, secret, listener, addr string) (admin bool, err error)
	IsAdmin(id string) bool
	// IsUser reports whether id is a user's account: an administrator may
	// not use a user's client ids unless impersonating.
	IsUser(ctx context.Context, id string) (bool, error)
}

// DeliveryGate decides whether an entry may go to one subscriber right now.
// Inbox implements it; it is asked only for subscriptions that already exist.
type DeliveryGate interface {
	AllowDelivery(cl *mqtt.Client, topic string) bool
	// MayReadGroup reports whether user is a member of group.
	MayReadGroup(user, group string) bool
}

// PresenceGate decides who may subscribe to a user's presence (p/{user}), by
// the user's privacy setting. Presence implements it.
type PresenceGate interface {
	MaySee(ctx context.Context, viewer, user string) bool
}

// AuthConfig configures the Auth hook.
type AuthConfig struct {
	// MaxClientID is the longest client id accepted, in bytes; a client id
	// must also be printable UTF-8 (protocol.Printable). Others are refused
	// with CONNACK 0x85 (MQTT 3.1.1: 2). Default 128.
	MaxClientID int
	// MaxConnectionsPerUser is the most connections a user may hold on this
	// node at once; more are refused with CONNACK 0x97 quota exceeded (MQTT
	// 3.1.1: 3 server unavailable). Administrators are not limited.
	// Default 16; negative: no limit.
	MaxConnectionsPerUser int
	// Timeout bounds each credential check. Default 5s.
	Timeout time.Duration
}

func (c *AuthConfig) setDefaults() {
	if c.MaxClientID <= 0 {
		c.MaxClientID = 128
	}
	if c.MaxConnectionsPerUser == 0 {
		c.MaxConnectionsPerUser = 16
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
}

// Auth is the hook that authenticates connections and authorises topics.
//
// Identity: the CONNECT username is the user id and the password a token (or
// an administrator's password). The client id must be the user id or start
// with "{user}/". An administrator may use other client ids too, but not a
// user's (one whose part before the first "/" is a user's account) unless
// impersonating: an MQTT 5 CONNECT with the user property impersonate=true,
// logged at warn. Publish authorisation is left to Inbox.OnPublish, so that
// refusals are reported with reason codes and error entries instead of
// mochi's disconnect of 3.1.1 clients.
type Auth struct {
	mqtt.HookBase
	cfg      AuthConfig
	authn    Authenticator
	gate     DeliveryGate
	presence PresenceGate
	log      *slog.Logger
	badCreds func(error) bool
	mq       broker     // only its per-client methods: Auth holds no server
	mu       sync.Mutex // guards the fields below
	verified map[*mqtt.Client]bool
	conns    map[string]map[*mqtt.Client]struct{} // user -> its connections (MaxConnectionsPerUser)
}

// NewAuth returns the Auth hook. isBadCredentials tells refused credentials
// apart from a failed check (the store being down). presence may be nil:
// then users see only their own presence.
func NewAuth(cfg AuthConfig, authn Authenticator, gate DeliveryGate, presence PresenceGate, isBadCredentials func(error) bool, log *slog.Logger) *Auth {
	cfg.setDefaults()
	return &Auth{cfg: cfg, authn: authn, gate: gate, presence: presence, log: log,
		badCreds: isBadCredentials, verified: map[*mqtt.Client]bool{}, conns: map[string]map[*mqtt.Client]struct{}{}}
}

// ID implements mqtt.Hook.
func (h *Auth) ID() string { return "parley-auth" }

// Provides implements mqtt.Hook.
func (h *Auth) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect}, []byte{b})
}

// OnConnect authenticates the client and, when it is refused, sends the
// CONNACK with the precise reason: v5 0x86 / v3 4 for bad credentials (and
// a username longer than any user's, refused without a lookup), v5 0x9F /
// v3 3 for an administrator's name or a client address locked out after
// failed passwords (refused unchecked), v5 0x85 / v3 2 for a client id
// that is not the user's, too long or not printable (or a user's, to an
// administrator not impersonating), v5 0x88 / v3 3 when the check could
// not be made, v5 0x97 / v3 3 for a user at MaxConnectionsPerUser, v5 0x8C
// for an MQTT 5 CONNECT asking for enhanced authentication (an
// Authentication Method), which Parley does not support. Runs on the
// client's goroutine; one token lookup (usually cached).
func (h *Auth) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	user := string(pk.Connect.Username)
	// Enhanced authentication (AUTH exchanges) is not supported: refused
	// before the credentials are looked at, rather than ignoring the method
	// and admitting the client on its password alone [MQTT-4.12.0-1].
	// 3.1.1 has no properties; the v3 code is never used.
	if pk.Properties.AuthenticationMethod != "" {
		return h.refuse(cl, packets.ErrBadAuthenticationMethod, 0x04)
	}
	// Bounded before anything is looked up or stored: a client id is a key
	// of the cursors table, whose index rows cannot exceed 2,704 bytes
	// (Postgres), nor hold NUL.
	if len(cl.ID) > h.cfg.MaxClientID {
		return h.refuse(cl, packets.ErrClientIdentifierTooLong, 0x02)
	}
	if !protocol.Printable(cl.ID) {
		return h.refuse(cl, packets.ErrClientIdentifierNotValid, 0x02)
	}
	if len(user) > maxUsernameLen {
		return h.refuse(cl, packets.ErrBadUsernameOrPassword, 0x04)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Timeout)
	defer cancel()
	admin, err := h.authn.Authenticate(ctx, user, string(pk.Connect.Password), cl.Net.Listener, cl.Net.Remote)
	var throttled interface{ RetryAfter() time.Duration }
	switch {
	case errors.As(err, &throttled):
		// 0x9F rather than 0x8A banned: the refusal is temporary, and
		// clients read 0x9F as "try again later" (3.1.1: 3 likewise).
		code := packets.Code{Code: packets.ErrConnectionRateExceeded.Code,
			Reason: fmt.Sprintf("too many failed sign-ins, retry in %ds", int((throttled.RetryAfter()+time.Second-1)/time.Second))}
		return h.refuse(cl, code, 0x03)
	case err != nil && h.badCreds(err):
		return h.refuse(cl, packets.ErrBadUsernameOrPassword, 0x04)
	case err != nil:
		h.log.Warn("cannot check credentials", "client", cl.ID, "user", user, "error", err)
		return h.refuse(cl, packets.ErrServerUnavailable, 0x03)
	case !admin && !protocol.ClientIDBelongsTo(cl.ID, user):
		return h.refuse(cl, packets.ErrClientIdentifierNotValid, 0x02)
	case admin:
		if code, v3 := h.adminClientID(ctx, cl, pk, user); code != nil {
			return h.refuse(cl, *code, v3)
		}
	case !admin && !h.admit(user, cl):
		h.log.Info("connection refused: too many for the user", "client", cl.ID, "user", user,
			"max_connections_per_user", h.cfg.MaxConnectionsPerUser)
		return h.refuse(cl, errTooManyConnections, 0x03)
	}
	h.mu.Lock()
	h.verified[cl] = true
	h.mu.Unlock()
	return nil
}

// adminClientID applies the client-id rule to an administrator: its own
// client ids ("{admin}", "{admin}/…") and ids of no user are theirs; a
// user's ("{user}", "{user}/…" of an existing account) would take over
// that device's session and move its cursors, so it is refused unless the
// administrator impersonates on purpose (MQTT 5 user property
// impersonate=true), which is logged at warn. It returns the refusal, or
// nil.
func (h *Auth) adminClientID(ctx context.Context, cl *mqtt.Client, pk packets.Packet, admin string) (*packets.Code, byte) {
	if protocol.ClientIDBelongsTo(cl.ID, admin) {
		return nil, 0
	}
	owner, _, _ := strings.Cut(cl.ID, "/")
	if !protocol.ValidID(owner) || h.authn.IsAdmin(owner) {
		return nil, 0
	}
	isUser, err := h.authn.IsUser(ctx, owner)
	if err != nil {
		h.log.Warn("cannot check credentials", "client", cl.ID, "user", admin, "error", err)
		return &packets.ErrServerUnavailable, 0x03
	}
	if !isUser {
		return nil, 0
	}
	attrs := []any{"user", admin, "client", cl.ID, "impersonated", owner, "listener", cl.Net.Listener, "address", cl.Net.Remote}
	if !impersonates(pk) {
		h.log.Info("administrator refused: a user's client id, not impersonating", attrs...)
		return &packets.ErrClientIdentifierNotValid, 0x02
	}
	h.log.Warn("administrator impersonating a user's device", attrs...)
	return nil, 0
}

// impersonates reports whether a CONNECT carries the user property
// impersonate=true (MQTT 5 only: 3.1.1 has no properties).
func impersonates(pk packets.Packet) bool {
	for _, p := range pk.Properties.User {
		if p.Key == "impersonate" && p.Val == "true" {
			return true
		}
	}
	return false
}

// refuse writes a CONNACK refusing the connection and returns the error
// that makes mochi close it. An MQTT 3.1.1 client gets v3, which must be a
// 3.1.1 refusal (1-5); anything else is replaced by mochi's
// mapping of v5 (packets.V3ConnackCode), so that no MQTT 5 code reaches it.
func (h *Auth) refuse(cl *mqtt.Client, v5 packets.Code, v3 byte) error {
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: v5.Code}
	if cl.Properties.ProtocolVersion < 5 {
		if v3 < 0x01 || v3 > 0x05 {
			v3 = packets.V3ConnackCode(v5).Code
		}
		ack.ReasonCode = v3
	} else {
		ack.Properties.ReasonString = v5.Reason
	}
	if err := h.mq.write(cl, ack); err != nil {
		h.log.Debug("connack not sent", "client", cl.ID, "error", err)
	}
	return v5
}

// OnConnectAuthenticate admits exactly the clients OnConnect verified.
func (h *Auth) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ok := h.verified[cl]
	delete(h.verified, cl)
	return ok
}

// OnDisconnect forgets a client OnConnect verified but mochi never admitted,
// and releases the connection's place under its user's cap.
func (h *Auth) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	delete(h.verified, cl)
	h.mu.Unlock()
	h.release(string(cl.Properties.Username), cl)
}

// OnACLCheck authorises subscriptions and gates deliveries. Publishing is
// always allowed here and decided in Inbox.OnPublish.
//
// mochi asks the same question (client, topic, read) when a client subscribes
// and before each delivery to it. A subscription that does not exist yet
// means the former; then the answer is the user's right to read the filter.
// Otherwise it is a delivery, and the DeliveryGate decides.
func (h *Auth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write || cl.Net.Inline {
		return true
	}
	user := string(cl.Properties.Username)
	if _, subscribed := h.mq.subscription(cl, topic); subscribed {
		return h.gate.AllowDelivery(cl, topic)
	}
	return h.mayRead(user, topic)
}

func (h *Auth) mayRead(user, filter string) bool {
	if h.authn.IsAdmin(user) {
		return true
	}
	if !protocol.IsReserved(filter) {
		return false // everything outside u/, g/, p/ is for administrators
	}
	t, ok := protocol.ParseTopic(filter)
	if !ok {
		return false // wildcards and malformed names
	}
	switch t.Kind {
	case protocol.KindUser:
		return t.ID == user
	case protocol.KindGroup:
		return h.gate.MayReadGroup(user, t.ID)
	case protocol.KindPresence:
		if t.ID == user || h.presence == nil {
			return t.ID == user
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Timeout)
		defer cancel()
		return h.presence.MaySee(ctx, user, t.ID)
	}
	return false
}
