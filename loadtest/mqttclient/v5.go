package mqttclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
)

// v5Conn is an MQTT 5 connection on paho.golang.
type v5Conn struct {
	client  *paho.Client
	session *ackSession
	pubMu   sync.Mutex    // serializes publishes so each one's ack callback meets its packet id
	done    chan struct{} // closed once the client is down and its error known
	errSet  chan struct{} // closed when err is set

	mu     sync.Mutex // guards the fields below
	err    error
	closed bool
}

func connectV5(ctx context.Context, o Options) (Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	nc, err := o.Dialer.Dial(ctx, o.Addr)
	if err != nil {
		return nil, err
	}
	c := &v5Conn{session: newAckSession(), done: make(chan struct{}), errSet: make(chan struct{})}
	handler := o.OnMessage
	c.client = paho.NewClient(paho.ClientConfig{
		ClientID:      o.ClientID,
		Conn:          nc,
		Session:       c.session,
		PacketTimeout: o.PacketTimeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				p := pr.Packet
				handler(Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Duplicate: p.Duplicate(), Received: time.Now()})
				return true, nil
			},
		},
		OnClientError: func(err error) { c.setErr(fmt.Errorf("%w: %w", ErrConnectionLost, err)) },
		OnServerDisconnect: func(d *paho.Disconnect) {
			reason := ""
			if d.Properties != nil {
				reason = d.Properties.ReasonString
			}
			c.setErr(fmt.Errorf("%w: server sent DISCONNECT: %s (0x%02x) %s",
				ErrConnectionLost, ReasonName(d.ReasonCode, false), d.ReasonCode, reason))
		},
	})
	cp := &paho.Connect{
		ClientID:   o.ClientID,
		KeepAlive:  uint16(o.KeepAlive / time.Second),
		CleanStart: o.CleanStart,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &o.ReceiveMaximum},
	}
	if o.SessionExpiry > 0 {
		exp := uint32(o.SessionExpiry / time.Second)
		cp.Properties.SessionExpiryInterval = &exp
	}
	if o.Username != "" {
		cp.Username, cp.UsernameFlag = o.Username, true
	}
	if o.Password != "" {
		cp.Password, cp.PasswordFlag = []byte(o.Password), true
	}
	ca, err := c.client.Connect(ctx, cp)
	if err != nil {
		_ = nc.Close()
		_ = c.session.Close()
		if ca != nil && ca.ReasonCode >= 0x80 {
			reason := ""
			if ca.Properties != nil {
				reason = ca.Properties.ReasonString
			}
			return nil, &ConnackError{Code: ca.ReasonCode, Reason: reason}
		}
		return nil, fmt.Errorf("mqtt connect %s: %w", o.Addr, err)
	}
	go func() {
		<-c.client.Done()
		_ = c.session.Close() // paho closes only the sessions it created
		// paho reports the error after Done closes: give it a moment so that
		// Err explains the loss when Done fires.
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if !closed {
			select {
			case <-c.errSet:
			case <-time.After(100 * time.Millisecond):
				c.setErr(ErrConnectionLost)
			}
		}
		close(c.done)
	}()
	return c, nil
}

func (c *v5Conn) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && !c.closed {
		c.err = err
		close(c.errSet)
	}
}

func (c *v5Conn) Publish(ctx context.Context, topic string, qos byte, payload []byte, onAck AckFunc) error {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	if qos > 0 {
		c.session.next = onAck
		defer func() { c.session.next = nil }()
	}
	// AsyncSend returns once the packet is written (after waiting, for QoS 1,
	// for a slot under the broker's Receive Maximum); the ack session reports
	// the PUBACK.
	_, err := c.client.PublishWithOptions(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload},
		paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
	if err != nil {
		if errors.Is(err, paho.ErrNetworkErrorAfterStored) {
			// Stored in the session, so the ack callback will still fire (with
			// ErrConnectionLost when the connection is gone).
			return nil
		}
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

func (c *v5Conn) Subscribe(ctx context.Context, qos byte, filters ...string) error {
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: qos})
	}
	sa, err := c.client.Subscribe(ctx, s)
	if err != nil {
		return fmt.Errorf("subscribe %v: %w", filters, err)
	}
	for i, code := range sa.Reasons {
		if code >= 0x80 {
			return fmt.Errorf("subscribe %s: refused: %s (0x%02x)", filters[i], ReasonName(code, false), code)
		}
	}
	return nil
}

func (c *v5Conn) Done() <-chan struct{} { return c.done }

func (c *v5Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *v5Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	select {
	case <-c.client.Done():
		<-c.done
		return nil
	default:
	}
	err := c.client.Disconnect(&paho.Disconnect{ReasonCode: 0})
	<-c.done
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("disconnect: %w", err)
	}
	return nil
}

// ackSession wraps paho's in-memory session state to learn which PUBACK
// answers which publish: paho's own result channel for an AsyncSend publish is
// never read. It is also where a lost connection fails every pending publish.
type ackSession struct {
	*state.State

	// next is the callback of the publish in progress, set by v5Conn.Publish
	// under pubMu: AddToSession runs synchronously inside that publish.
	next AckFunc

	mu      sync.Mutex // guards the fields below
	pending map[uint16]AckFunc
}

func newAckSession() *ackSession {
	return &ackSession{State: state.NewInMemory(), pending: make(map[uint16]AckFunc)}
}

var _ session.SessionManager = (*ackSession)(nil)

func (s *ackSession) AddToSession(ctx context.Context, p session.Packet, resp chan<- packets.ControlPacket) error {
	if err := s.State.AddToSession(ctx, p, resp); err != nil {
		return err
	}
	if pb, ok := p.(*packets.Publish); ok && s.next != nil {
		// The packet is written only after this returns, so its PUBACK
		// cannot come before the callback is in place.
		s.mu.Lock()
		s.pending[pb.PacketID] = s.next
		s.mu.Unlock()
	}
	return nil
}

func (s *ackSession) PacketReceived(cp *packets.ControlPacket, ch chan<- *packets.Publish) error {
	var (
		cb   AckFunc
		code byte
	)
	if pa, ok := cp.Content.(*packets.Puback); ok {
		s.mu.Lock()
		cb = s.pending[pa.PacketID]
		delete(s.pending, pa.PacketID)
		s.mu.Unlock()
		code = pa.ReasonCode
	}
	err := s.State.PacketReceived(cp, ch)
	if cb != nil {
		cb(code, nil)
	}
	return err
}

func (s *ackSession) ConnectionLost(dp *packets.Disconnect) error {
	s.mu.Lock()
	pending := s.pending
	s.pending = make(map[uint16]AckFunc)
	s.mu.Unlock()
	for _, cb := range pending {
		cb(0, ErrConnectionLost)
	}
	return s.State.ConnectionLost(dp)
}

// ConAckReceived fails publishes left over from an earlier connection; a fresh
// session per connection means there are none.
func (s *ackSession) ConAckReceived(w io.Writer, cp *packets.Connect, ca *packets.Connack) error {
	return s.State.ConAckReceived(w, cp, ca)
}
