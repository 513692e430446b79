package mqttclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// v311Conn is an MQTT 3.1.1 connection on paho.mqtt.golang.
type v311Conn struct {
	client  mqtt.Client
	timeout time.Duration
	pending chan pendingAck // QoS 1 publishes awaiting their PUBACK, in order
	done    chan struct{}
	stop    chan struct{} // closed by Close to end the ack waiter
	wg      sync.WaitGroup

	mu     sync.Mutex // guards the fields below
	err    error
	closed bool
	isDone bool
}

type pendingAck struct {
	token mqtt.Token
	onAck AckFunc
}

func connectV311(ctx context.Context, o Options) (Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	// Dial here rather than in the library so that the context, the source
	// address and the rate limit apply.
	nc, err := o.Dialer.Dial(ctx, o.Addr)
	if err != nil {
		return nil, err
	}
	c := &v311Conn{
		timeout: o.PacketTimeout,
		pending: make(chan pendingAck, o.MaxInflight),
		done:    make(chan struct{}),
		stop:    make(chan struct{}),
	}
	handler := o.OnMessage
	opts := mqtt.NewClientOptions().
		AddBroker("tcp://" + o.Addr).
		SetClientID(o.ClientID).
		SetUsername(o.Username).
		SetPassword(o.Password).
		// 3.1.1 has no session expiry: a session that should outlive the
		// connection needs clean session off.
		SetCleanSession(o.CleanStart && o.SessionExpiry == 0).
		SetKeepAlive(o.KeepAlive).
		SetPingTimeout(o.PacketTimeout).
		SetConnectTimeout(o.ConnectTimeout).
		SetWriteTimeout(o.PacketTimeout).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(true). // one handler goroutine, messages in order
		SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
			if nc == nil {
				return nil, errors.New("connection already used")
			}
			conn := nc
			nc = nil
			return conn, nil
		}).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			handler(Message{Topic: m.Topic(), Payload: m.Payload(), QoS: m.Qos(), Duplicate: m.Duplicate(), Received: time.Now()})
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			c.finish(fmt.Errorf("%w: %w", ErrConnectionLost, err))
		})
	c.client = mqtt.NewClient(opts)
	tok := c.client.Connect()
	if err := waitToken(ctx, tok); err != nil {
		if nc != nil {
			_ = nc.Close()
		}
		if ct, ok := tok.(*mqtt.ConnectToken); ok && ct.ReturnCode() != 0 {
			return nil, &ConnackError{Code: ct.ReturnCode()}
		}
		c.client.Disconnect(0)
		return nil, fmt.Errorf("mqtt connect %s: %w", o.Addr, err)
	}
	c.wg.Add(1)
	go c.waitAcks()
	return c, nil
}

func waitToken(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// finish marks the connection as ended.
func (c *v311Conn) finish(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isDone {
		return
	}
	if !c.closed {
		c.err = err
	}
	c.isDone = true
	close(c.done)
}

// waitAcks reports PUBACKs in publish order, which is the order a broker
// sends them in [MQTT-4.6.0-2].
func (c *v311Conn) waitAcks() {
	defer c.wg.Done()
	for {
		var p pendingAck
		select {
		case p = <-c.pending:
		case <-c.stop:
			c.failPending()
			return
		}
		select {
		case <-p.token.Done():
			if err := p.token.Error(); err != nil {
				p.onAck(0, fmt.Errorf("%w: %w", ErrConnectionLost, err))
			} else {
				p.onAck(0, nil)
			}
		case <-c.done:
			p.onAck(0, ErrConnectionLost)
		case <-c.stop:
			p.onAck(0, ErrConnectionLost)
		}
	}
}

func (c *v311Conn) failPending() {
	for {
		select {
		case p := <-c.pending:
			p.onAck(0, ErrConnectionLost)
		default:
			return
		}
	}
}

func (c *v311Conn) Publish(ctx context.Context, topic string, qos byte, payload []byte, onAck AckFunc) error {
	select {
	case <-c.done:
		return fmt.Errorf("publish %s: %w", topic, ErrConnectionLost)
	default:
	}
	tok := c.client.Publish(topic, qos, false, payload)
	if qos == 0 {
		if err := waitToken(ctx, tok); err != nil {
			return fmt.Errorf("publish %s: %w", topic, err)
		}
		return nil
	}
	if onAck == nil {
		onAck = func(byte, error) {}
	}
	select {
	case c.pending <- pendingAck{token: tok, onAck: onAck}:
		return nil
	case <-ctx.Done():
		onAck(0, ctx.Err())
		return nil
	case <-c.stop:
		onAck(0, ErrClosed)
		return nil
	}
}

func (c *v311Conn) Subscribe(ctx context.Context, qos byte, filters ...string) error {
	m := make(map[string]byte, len(filters))
	for _, f := range filters {
		m[f] = qos
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	tok := c.client.SubscribeMultiple(m, nil)
	if err := waitToken(ctx, tok); err != nil {
		return fmt.Errorf("subscribe %v: %w", filters, err)
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for f, code := range st.Result() {
			if code >= 0x80 {
				return fmt.Errorf("subscribe %s: refused (0x%02x)", f, code)
			}
		}
	}
	return nil
}

func (c *v311Conn) Done() <-chan struct{} { return c.done }

func (c *v311Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *v311Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.err = nil
	c.mu.Unlock()
	c.client.Disconnect(100)
	close(c.stop)
	c.wg.Wait()
	c.finish(nil)
	return nil
}
