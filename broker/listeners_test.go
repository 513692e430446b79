package broker

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/parleychat/parley/internal/testwait"
)

// value reads a counter's or a gauge's value.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// fakeListener hands out what the test sends on results: a net.Conn or an
// error. Close makes Accept return net.ErrClosed, as a real listener does.
type fakeListener struct {
	results chan any
	closed  chan struct{}
}

func newFakeListener() *fakeListener {
	return &fakeListener{results: make(chan any), closed: make(chan struct{})}
}

func (f *fakeListener) Accept() (net.Conn, error) {
	select {
	case r := <-f.results:
		if err, ok := r.(error); ok {
			return nil, err
		}
		return r.(net.Conn), nil
	case <-f.closed:
		return nil, net.ErrClosed
	}
}

func (f *fakeListener) Close() error   { close(f.closed); return nil }
func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// emfile is the error accept(2) gives when the process has no descriptor
// left, as the net package wraps it.
var emfile = &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}

// TestGatedListenerSurvivesAcceptErrors: EMFILE (or any error but
// net.ErrClosed) is counted, makes the listener unready while it lasts, and
// does not end Accept; the next connection is returned; Close ends Accept
// even in the middle of a back-off.
func TestGatedListenerSurvivesAcceptErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newConnMetrics(reg)
	fake := newFakeListener()
	l := newGatedListener("mqtt", fake, 0, nil, m, slog.New(slog.DiscardHandler))
	l.state.Store(gateServing)

	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		accepted <- result{c, err}
	}()
	const failures = 4
	for range failures {
		fake.results <- emfile // each is taken after the back-off of the one before
	}
	if err := l.check(time.Now()); err == nil {
		t.Fatal("a listener failing to accept reports ready")
	}
	server, client := net.Pipe()
	defer client.Close()
	fake.results <- server
	r := <-accepted
	if r.err != nil {
		t.Fatalf("Accept after %d errors: %v", failures, r.err)
	}
	if got := value(m.acceptErrors.WithLabelValues("mqtt")); got != failures {
		t.Fatalf("parley_accept_errors_total = %v, want %d", got, failures)
	}
	if err := l.check(time.Now()); err != nil {
		t.Fatalf("ready again after a successful accept: %v", err)
	}
	if got := value(m.open.WithLabelValues("mqtt")); got != 1 {
		t.Fatalf("open connections %v, want 1", got)
	}
	r.c.Close()
	r.c.Close() // a second Close gives nothing back twice
	if got := value(m.open.WithLabelValues("mqtt")); got != 0 {
		t.Fatalf("open connections after close %v, want 0", got)
	}

	// A failure with no success after it: unready while fresh, ready once it
	// is older than the longest back-off (the cause went away).
	go func() {
		_, err := l.Accept()
		accepted <- result{nil, err}
	}()
	fake.results <- emfile
	testwait.Until(t, 5*time.Second, "the error to be counted", func() bool {
		return value(m.acceptErrors.WithLabelValues("mqtt")) == failures+1
	})
	if err := l.check(time.Now()); err == nil {
		t.Fatal("ready right after an accept error")
	}
	if err := l.check(time.Now().Add(stuckWindow + time.Millisecond)); err != nil {
		t.Fatalf("not ready %v after the last accept error: %v", stuckWindow, err)
	}

	// Close during the back-off ends Accept with net.ErrClosed.
	l.Close()
	if r := <-accepted; !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", r.err)
	}
	if err := l.check(time.Now()); err == nil {
		t.Fatal("a closed listener reports ready")
	}
}

func TestGatedListenerStoppedIsNotReady(t *testing.T) {
	l := newGatedListener("ws", newFakeListener(), 0, nil, newConnMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	if err := l.check(time.Now()); err != nil {
		t.Fatalf("a listener not serving yet: %v", err)
	}
	l.state.Store(gateServing)
	if err := l.check(time.Now()); err != nil {
		t.Fatalf("a serving listener: %v", err)
	}
	l.state.Store(gateStopped)
	if err := l.check(time.Now()); err == nil {
		t.Fatal("a listener whose accept loop stopped reports ready")
	}
}

func TestIPLimiter(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	t0 := time.Unix(1_700_000_000, 0)

	t.Run("open connections", func(t *testing.T) {
		g := newIPLimiter(2, 0, 0)
		for i := range 2 {
			if r := g.admit(a, t0); r != "" {
				t.Fatalf("connection %d refused: %s", i, r)
			}
		}
		if r := g.admit(a, t0); r != refusedPerIP {
			t.Fatalf("third connection: %q, want %q", r, refusedPerIP)
		}
		if r := g.admit(b, t0); r != "" {
			t.Fatalf("another address refused: %s", r)
		}
		g.release(a)
		if r := g.admit(a, t0); r != "" {
			t.Fatalf("after a release: %s", r)
		}
		g.release(a)
		g.release(a)
		g.release(b)
		if len(g.open) != 0 {
			t.Fatalf("open counts left after every release: %v", g.open)
		}
	})
	t.Run("rate", func(t *testing.T) {
		g := newIPLimiter(0, 1, 2) // 1 a second, burst 2
		for i := range 2 {
			if r := g.admit(a, t0); r != "" {
				t.Fatalf("connection %d of the burst refused: %s", i, r)
			}
		}
		if r := g.admit(a, t0); r != refusedRate {
			t.Fatalf("past the burst: %q, want %q", r, refusedRate)
		}
		if r := g.admit(a, t0.Add(time.Second)); r != "" {
			t.Fatalf("a second later: %s", r)
		}
	})
	t.Run("buckets bounded", func(t *testing.T) {
		g := newIPLimiter(0, 1, 1)
		g.maxTracked = 8
		for i := range 1000 {
			ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
			if r := g.admit(ip, t0); r != "" {
				t.Fatalf("first connection of %s refused: %s", ip, r)
			}
			if len(g.buckets) > g.maxTracked {
				t.Fatalf("%d buckets, bound %d", len(g.buckets), g.maxTracked)
			}
		}
	})
	t.Run("IPv6 counts by /64", func(t *testing.T) {
		g := newIPLimiter(1, 0, 0)
		k1, _ := ipKey(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2::1")})
		k2, _ := ipKey(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::9")})
		k3, _ := ipKey(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:3::1")})
		if g.admit(k1, t0) != "" || g.admit(k2, t0) != refusedPerIP || g.admit(k3, t0) != "" {
			t.Fatalf("keys %v %v %v: one /64 must count as one address", k1, k2, k3)
		}
		k4, _ := ipKey(&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1")})
		if k4 != a {
			t.Fatalf("IPv4-mapped address keyed %v, want %v", k4, a)
		}
	})
}

func TestKeepaliveBound(t *testing.T) {
	h := &keepaliveBound{max: 300}
	cases := map[string]struct {
		asked, want uint16
		told        bool
	}{
		"none asked":  {0, 300, true},
		"above max":   {1200, 300, true},
		"at max":      {300, 300, false},
		"below max":   {30, 30, false},
		"the minimum": {1, 1, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cl := &mqtt.Client{}
			cl.State.Keepalive = c.asked
			if err := h.OnConnect(cl, packets.Packet{}); err != nil {
				t.Fatal(err)
			}
			if cl.State.Keepalive != c.want || cl.State.ServerKeepalive != c.told {
				t.Fatalf("keep-alive %d, server keep-alive sent %v; want %d, %v",
					cl.State.Keepalive, cl.State.ServerKeepalive, c.want, c.told)
			}
		})
	}
}
