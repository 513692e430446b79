package mqttclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/goleak"

	"github.com/parleychat/parley/loadtest/baremochi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startBroker(t *testing.T) string {
	t.Helper()
	b, err := baremochi.Start(baremochi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b.Addr()
}

func TestPublishSubscribe(t *testing.T) {
	addr := startBroker(t)
	for _, proto := range []int{V5, V311} {
		t.Run(fmt.Sprintf("v%d", proto), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got := make(chan Message, 100)
			topic := fmt.Sprintf("test/%d", proto)
			sub, err := Dial(ctx, ClientConfig{
				Options:      Options{Addr: addr, Protocol: proto, ClientID: topic + "/sub", CleanStart: true, OnMessage: func(m Message) { got <- m }},
				Subscribe:    []string{topic},
				SubscribeQoS: 1,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			pub, err := Connect(ctx, Options{Addr: addr, Protocol: proto, ClientID: topic + "/pub", CleanStart: true,
				Dialer: &Dialer{Sources: []net.IP{net.IPv4(127, 0, 0, 2)}}})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			acks := make(chan error, 10)
			for i := range 10 {
				err := pub.Publish(ctx, topic, 1, []byte{byte(i)}, func(code byte, err error) {
					if err == nil && code != 0 {
						err = fmt.Errorf("reason code 0x%02x", code)
					}
					acks <- err
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			for i := range 10 {
				select {
				case err := <-acks:
					if err != nil {
						t.Fatalf("ack %d: %v", i, err)
					}
				case <-ctx.Done():
					t.Fatalf("ack %d: %v", i, ctx.Err())
				}
				select {
				case m := <-got:
					if m.Topic != topic || len(m.Payload) != 1 || m.Payload[0] != byte(i) {
						t.Fatalf("message %d = %q %v", i, m.Topic, m.Payload)
					}
				case <-ctx.Done():
					t.Fatalf("message %d: %v", i, ctx.Err())
				}
			}
			if err := pub.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := pub.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestPendingAcksFailOnConnectionLoss(t *testing.T) {
	// A listener that accepts MQTT 5 CONNECT, answers CONNACK and then goes
	// silent, so PUBACKs never come; closing it must fail the publishes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvConn := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 1024)
		_, _ = c.Read(buf)                                   // CONNECT
		_, _ = c.Write([]byte{0x20, 0x03, 0x00, 0x00, 0x00}) // CONNACK, success, no properties
		srvConn <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := Connect(ctx, Options{Addr: ln.Addr().String(), ClientID: "x", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	acks := make(chan error, 3)
	for range 3 {
		if err := conn.Publish(ctx, "t", 1, []byte("p"), func(_ byte, err error) { acks <- err }); err != nil {
			t.Fatal(err)
		}
	}
	(<-srvConn).Close()
	for i := range 3 {
		select {
		case err := <-acks:
			if !errors.Is(err, ErrConnectionLost) {
				t.Errorf("ack %d: err = %v, want ErrConnectionLost", i, err)
			}
		case <-ctx.Done():
			t.Fatal("pending publishes were not failed")
		}
	}
	<-conn.Done()
	if !errors.Is(conn.Err(), ErrConnectionLost) {
		t.Errorf("Err() = %v", conn.Err())
	}
}

func TestAdvice(t *testing.T) {
	tests := map[string]struct {
		err  error
		want string
	}{
		"emfile":        {&net.OpError{Op: "dial", Err: &net.AddrError{}}, ""},
		"too many open": {&net.OpError{Op: "dial", Err: fmt.Errorf("socket: %w", syscall.EMFILE)}, "ulimit -n"},
		"no ports":      {&net.OpError{Op: "dial", Err: syscall.EADDRNOTAVAIL}, "-source"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := classifyDialError(tc.err, "127.0.0.1:1", nil)
			got := Advice(fmt.Errorf("wrapped: %w", err))
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("Advice() = %q, want it to mention %q", got, tc.want)
			}
		})
	}
}

func TestClientReconnects(t *testing.T) {
	b, err := baremochi.Start(baremochi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan Message, 10)
	drops := make(chan error, 10)
	c, err := Dial(ctx, ClientConfig{
		Options:      Options{Addr: b.Addr(), ClientID: "rc", CleanStart: true, OnMessage: func(m Message) { got <- m }},
		Subscribe:    []string{"rc/t"},
		SubscribeQoS: 1,
		Reconnect:    true,
		MinBackoff:   10 * time.Millisecond,
		MaxBackoff:   50 * time.Millisecond,
		OnDrop:       func(err error) { drops <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	cl, ok := b.Server().Clients.Get("rc")
	if !ok {
		t.Fatal("broker does not know the client")
	}
	_ = b.Server().DisconnectClient(cl, packets.ErrServerBusy)
	select {
	case err := <-drops:
		if !errors.Is(err, ErrConnectionLost) {
			t.Errorf("drop error = %v", err)
		}
	case <-ctx.Done():
		t.Fatal("no drop reported")
	}
	for !c.Connected() {
		select {
		case <-ctx.Done():
			t.Fatal("did not reconnect")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if c.Reconnects() < 1 || c.Drops() != 1 {
		t.Errorf("reconnects %d, drops %d", c.Reconnects(), c.Drops())
	}
	// The new connection is subscribed again.
	pub, err := Connect(ctx, Options{Addr: b.Addr(), ClientID: "rc-pub", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(ctx, "rc/t", 0, []byte("again"), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m.Payload) != "again" {
			t.Errorf("got %q", m.Payload)
		}
	case <-ctx.Done():
		t.Fatal("no message after reconnecting")
	}
}
