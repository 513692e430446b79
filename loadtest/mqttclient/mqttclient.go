// Package mqttclient gives the load tester one small MQTT client interface over
// two libraries: github.com/eclipse/paho.golang for MQTT 5 and
// github.com/eclipse/paho.mqtt.golang for MQTT 3.1.1.
//
// Publish returns as soon as the message is written and reports the PUBACK
// later through a callback, so one sender can keep many QoS 1 messages in
// flight while still putting them on the wire in order. The Dialer spreads
// connections over several local source addresses, limits the connection rate,
// and turns "too many open files" into advice about ulimit.
package mqttclient

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors a Conn reports.
var (
	// ErrConnectionLost: the connection ended before a QoS 1 PUBACK arrived.
	ErrConnectionLost = errors.New("connection lost")
	// ErrNotConnected: a publish on a client that is between connections.
	ErrNotConnected = errors.New("not connected")
	// ErrClosed: a publish on a client that was closed.
	ErrClosed = errors.New("client closed")
)

// Message is one PUBLISH received.
type Message struct {
	Topic     string
	Payload   []byte
	QoS       byte
	Duplicate bool
	Received  time.Time // when the client handed it over, as close to the socket read as the library allows
}

// Handler receives messages. It runs on the connection's delivery goroutine,
// one message at a time and in order; for QoS 1 the PUBACK goes out after it
// returns. It should be quick.
type Handler func(Message)

// AckFunc learns the fate of a QoS 1 publish. When err is nil a PUBACK arrived
// with reason code code (MQTT 3.1.1 has none: always 0). Otherwise no PUBACK
// came (ErrConnectionLost, a timeout). It runs on the connection's read
// goroutine and must be quick.
type AckFunc func(code byte, err error)

// Conn is one MQTT connection.
type Conn interface {
	// Publish writes one message. For QoS 1, onAck (if not nil) is called
	// later, exactly once, unless Publish returns an error.
	Publish(ctx context.Context, topic string, qos byte, payload []byte, onAck AckFunc) error
	// Subscribe subscribes to the topic filters and waits for the SUBACK.
	Subscribe(ctx context.Context, qos byte, filters ...string) error
	// Done is closed when the connection has ended, for whatever reason.
	Done() <-chan struct{}
	// Err says why the connection ended; nil before Done is closed and after Close.
	Err() error
	// Close sends DISCONNECT and closes the connection. Safe to call twice.
	Close() error
}

// Protocol versions.
const (
	V311 = 3 // MQTT 3.1.1, through paho.mqtt.golang
	V5   = 5 // MQTT 5, through paho.golang
)

// Options describe one connection. The zero values of the optional fields
// give the defaults noted.
type Options struct {
	Addr     string // host:port of the broker
	Protocol int    // V5 (default) or V311
	ClientID string
	Username string // empty: no username
	Password string // empty: no password

	CleanStart bool // clean start (MQTT 5) or clean session (3.1.1)
	// SessionExpiry asks an MQTT 5 broker to keep the session this long after
	// the connection ends. 0: the session ends with the connection. On MQTT
	// 3.1.1, any SessionExpiry means clean session off (a persistent session).
	SessionExpiry time.Duration
	KeepAlive     time.Duration // default 30s
	// ReceiveMaximum is announced in the MQTT 5 CONNECT (default 1024). It
	// bounds unacknowledged QoS 1 messages the broker sends us and, because
	// paho.golang sizes its inbound queue by it, the client's memory.
	ReceiveMaximum uint16
	// MaxInflight bounds QoS 1 publishes awaiting their PUBACK on an MQTT
	// 3.1.1 connection (default 1024; MQTT 5 uses the broker's Receive
	// Maximum). Publish blocks while it is reached.
	MaxInflight    int
	ConnectTimeout time.Duration // CONNECT to CONNACK, dial included; default 10s
	PacketTimeout  time.Duration // SUBACK and in-flight quota waits; default 10s

	OnMessage Handler // may be nil
	Dialer    *Dialer // default: a Dialer with no source address and no rate limit
}

func (o Options) withDefaults() Options {
	if o.Protocol == 0 {
		o.Protocol = V5
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 30 * time.Second
	}
	if o.ReceiveMaximum == 0 {
		o.ReceiveMaximum = 1024
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = 1024
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.PacketTimeout == 0 {
		o.PacketTimeout = 10 * time.Second
	}
	if o.Dialer == nil {
		o.Dialer = &Dialer{}
	}
	if o.OnMessage == nil {
		o.OnMessage = func(Message) {}
	}
	return o
}

// ConnackError is a CONNACK that refused the connection.
type ConnackError struct {
	Code   byte   // MQTT 5 reason code, or 3.1.1 return code
	Reason string // reason string, if the broker sent one
}

func (e *ConnackError) Error() string {
	s := fmt.Sprintf("connection refused: %s (0x%02x)", ReasonName(e.Code, true), e.Code)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Connect dials and connects one client.
func Connect(ctx context.Context, o Options) (Conn, error) {
	o = o.withDefaults()
	switch o.Protocol {
	case V5:
		return connectV5(ctx, o)
	case V311:
		return connectV311(ctx, o)
	}
	return nil, fmt.Errorf("mqtt connect: unsupported protocol %d (want 3 or 5)", o.Protocol)
}

// ReasonName names an MQTT reason code. connack selects the CONNACK meaning of
// the 3.1.1 return codes 1-5, which overlap MQTT 5 codes.
func ReasonName(code byte, connack bool) string {
	if connack && code >= 1 && code <= 5 {
		return [...]string{"", "unacceptable protocol version", "identifier rejected",
			"server unavailable", "bad user name or password", "not authorized"}[code]
	}
	switch code {
	case 0x00:
		return "success"
	case 0x10:
		return "no matching subscribers"
	case 0x80:
		return "unspecified error"
	case 0x81:
		return "malformed packet"
	case 0x82:
		return "protocol error"
	case 0x83:
		return "implementation specific error"
	case 0x84:
		return "unsupported protocol version"
	case 0x85:
		return "client identifier not valid"
	case 0x86:
		return "bad user name or password"
	case 0x87:
		return "not authorized"
	case 0x88:
		return "server unavailable"
	case 0x89:
		return "server busy"
	case 0x8A:
		return "banned"
	case 0x8C:
		return "bad authentication method"
	case 0x8D:
		return "keep alive timeout"
	case 0x8E:
		return "session taken over"
	case 0x90:
		return "topic name invalid"
	case 0x91:
		return "packet identifier in use"
	case 0x93:
		return "receive maximum exceeded"
	case 0x95:
		return "packet too large"
	case 0x97:
		return "quota exceeded"
	case 0x99:
		return "payload format invalid"
	case 0x9C:
		return "use another server"
	case 0x9F:
		return "connection rate exceeded"
	}
	return "reason code"
}
