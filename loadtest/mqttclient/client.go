package mqttclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	Options Options
	// Subscribe lists topic filters to subscribe to on every connection, at
	// SubscribeQoS.
	Subscribe    []string
	SubscribeQoS byte
	// Reconnect reconnects after a lost connection, waiting a random time
	// between 0 and an exponentially growing bound (full jitter) from
	// MinBackoff (default 100ms) to MaxBackoff (default 5s), so that clients
	// dropped together do not come back together.
	Reconnect  bool
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// OnDrop, if set, is told each time a connection is lost.
	OnDrop func(err error)
	// OnReconnect, if set, is told of each reconnection attempt's outcome.
	OnReconnect func(err error)
}

// Client keeps one logical MQTT client connected: it subscribes on every
// connection and, if asked, reconnects with jittered backoff. Publishes made
// while it is between connections fail with ErrNotConnected.
type Client struct {
	cfg    ClientConfig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // guards the fields below
	conn   Conn       // nil while reconnecting
	closed bool

	reconnects atomic.Int64
	drops      atomic.Int64
}

// Dial connects the client for the first time and subscribes. The first
// connection is not retried: its error is returned. ctx bounds the first
// connection only.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Second, cfg.MinBackoff)
	}
	conn, err := connectAndSubscribe(ctx, cfg, cfg.Options)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, conn: conn}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.watch(conn)
	return c, nil
}

func connectAndSubscribe(ctx context.Context, cfg ClientConfig, o Options) (Conn, error) {
	conn, err := Connect(ctx, o)
	if err != nil {
		return nil, err
	}
	if len(cfg.Subscribe) > 0 {
		if err := conn.Subscribe(ctx, cfg.SubscribeQoS, cfg.Subscribe...); err != nil {
			_ = conn.Close()
			return nil, err
		}
	}
	return conn, nil
}

// watch waits for the connection to end and, if asked, replaces it.
func (c *Client) watch(conn Conn) {
	defer c.wg.Done()
	for {
		select {
		case <-conn.Done():
		case <-c.ctx.Done():
			return
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		c.conn = nil
		c.mu.Unlock()
		c.drops.Add(1)
		if c.cfg.OnDrop != nil {
			c.cfg.OnDrop(conn.Err())
		}
		if !c.cfg.Reconnect {
			return
		}
		o := c.cfg.Options
		// Resume the broker's session if it keeps one for us.
		o.CleanStart = o.SessionExpiry == 0
		var err error
		for attempt := 0; ; attempt++ {
			bound := min(c.cfg.MaxBackoff, c.cfg.MinBackoff<<min(attempt, 20))
			select {
			case <-time.After(rand.N(bound) + time.Millisecond):
			case <-c.ctx.Done():
				return
			}
			conn, err = connectAndSubscribe(c.ctx, c.cfg, o)
			c.reconnects.Add(1)
			if c.cfg.OnReconnect != nil {
				c.cfg.OnReconnect(err)
			}
			if err == nil {
				break
			}
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			_ = conn.Close()
			return
		}
		c.conn = conn
		c.mu.Unlock()
	}
}

// Publish publishes on the current connection; see Conn.Publish.
func (c *Client) Publish(ctx context.Context, topic string, qos byte, payload []byte, onAck AckFunc) error {
	c.mu.Lock()
	conn, closed := c.conn, c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("publish %s: %w", topic, ErrClosed)
	case conn == nil:
		return fmt.Errorf("publish %s: %w", topic, ErrNotConnected)
	}
	return conn.Publish(ctx, topic, qos, payload, onAck)
}

// Connected reports whether the client has a connection.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return false
	}
	select {
	case <-c.conn.Done():
		return false
	default:
		return true
	}
}

// Reconnects returns the number of reconnection attempts.
func (c *Client) Reconnects() int64 { return c.reconnects.Load() }

// Drops returns the number of connections lost.
func (c *Client) Drops() int64 { return c.drops.Load() }

// Close disconnects and stops reconnecting. Safe to call twice.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	c.cancel()
	var err error
	if conn != nil {
		err = conn.Close()
	}
	c.wg.Wait()
	if err != nil && !errors.Is(err, ErrConnectionLost) {
		return fmt.Errorf("close client: %w", err)
	}
	return nil
}
