package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
)

// streamListener serves MQTT on a listener Parley bound itself, so that a
// taken port is reported by Start (naming the setting that moves it) and a
// :0 port is known before clients connect. mochi's own listeners bind later
// and log every client's EOF as a warning with an empty message.
type streamListener struct {
	id    string
	proto string
	// ln admits connections (limits, back-off on Accept errors); Serve
	// accepts from it, directly or through http.Server.
	ln   *gatedListener
	log  *slog.Logger
	wg   sync.WaitGroup
	once sync.Once
	// http, if set, serves MQTT over WebSocket; otherwise raw TCP
	// connections are accepted.
	http        *http.Server
	wsPath      string
	allowOrigin func(*http.Request) bool
	// writeTimeout bounds each write to a client (see deadlineConn).
	writeTimeout time.Duration
	// connectTimeout bounds the wait for CONNECT: a read deadline set
	// before mochi reads the first packet, which mochi replaces with its
	// keep-alive deadline once CONNECT is accepted (attachClient calls
	// refreshDeadline after OnConnect; readConnectionPacket sets none).
	connectTimeout time.Duration
	// closeOwn disconnects the listener's clients when it closes.
	closeOwn func(listener string)
	// tls, if set, serves TLS (mqtts, wss): the handshake runs on the
	// connection's own goroutine, within connectTimeout.
	tls *tls.Config
}

var _ listeners.Listener = (*streamListener)(nil)

func (l *streamListener) ID() string       { return l.id }
func (l *streamListener) Address() string  { return l.ln.Addr().String() }
func (l *streamListener) Protocol() string { return l.proto }

func (l *streamListener) Init(log *slog.Logger) error {
	if l.log == nil {
		l.log = log
	}
	return nil
}

func (l *streamListener) Serve(establish listeners.EstablishFn) {
	l.ln.state.Store(gateServing)
	defer l.ln.state.Store(gateStopped)
	if l.http != nil {
		l.serveWS(establish)
		return
	}
	for {
		conn, err := l.ln.Accept() // only net.ErrClosed ends it
		if err != nil {
			return
		}
		if l.connectTimeout > 0 {
			_ = conn.SetReadDeadline(time.Now().Add(l.connectTimeout))
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := conn
			if l.tls != nil {
				tc, err := l.handshake(conn)
				if err != nil {
					l.log.Debug("tls handshake failed", "listener", l.id, "remote", conn.RemoteAddr().String(), "error", err)
					return
				}
				c = tc
			}
			l.logEnd(establish(l.id, &deadlineConn{Conn: c, timeout: l.writeTimeout}))
		}()
	}
}

// handshake runs a TLS server handshake on conn, bounded by connectTimeout
// (whose read deadline, already set, then goes on bounding the CONNECT). A
// failed handshake closes conn.
func (l *streamListener) handshake(conn net.Conn) (*tls.Conn, error) {
	tc := tls.Server(conn, l.tls)
	ctx := context.Background()
	if l.connectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.connectTimeout)
		defer cancel()
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = tc.Close()
		return nil, err
	}
	return tc, nil
}

// logEnd logs how a connection ended, unless it ended the ordinary way.
func (l *streamListener) logEnd(err error) {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
		return
	}
	l.log.Debug("connection ended", "listener", l.id, "error", err)
}

// Close stops accepting first, so that no client connects while the
// others are being disconnected (one reconnecting in between would be
// waited on by mochi's CloseAll), then disconnects the clients, and closes
// the connections that had not connected yet (a silent connection would
// otherwise hold CloseAll until its connect deadline).
func (l *streamListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		_ = l.ln.Close()
		// mochi's own closer (closeListenerClients) reads its client map
		// with GetByListener, which takes the map's read lock twice and
		// deadlocks against a client disconnecting at the same moment
		// (v2.7.9); closeOwn does the same work with one read lock.
		if l.closeOwn != nil {
			l.closeOwn(l.id)
		} else {
			closeClients(l.id)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if l.http != nil {
			_ = l.http.Shutdown(ctx)
		}
		if err := l.ln.drain(ctx); err != nil {
			l.log.Warn("connections still open at shutdown", "listener", l.id, "open", l.ln.open.Load(), "error", err)
		}
	})
}

// newWebSocketListener serves MQTT over WebSocket at path on ln, with the
// "mqtt" subprotocol, through srv (its timeouts set by the caller).
// allowOrigin decides which browser origins may connect.
func newWebSocketListener(id string, ln *gatedListener, srv *http.Server, path string, allowOrigin func(*http.Request) bool, log *slog.Logger) *streamListener {
	return &streamListener{id: id, proto: "ws", ln: ln, log: log, wsPath: path, allowOrigin: allowOrigin, http: srv}
}

func (l *streamListener) serveWS(establish listeners.EstablishFn) {
	up := &websocket.Upgrader{
		Subprotocols:    []string{"mqtt"},
		ReadBufferSize:  2048,
		WriteBufferSize: 2048,
		CheckOrigin:     l.allowOrigin,
	}
	l.http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != l.wsPath {
			http.Error(w, "MQTT over WebSocket is served at "+l.wsPath, http.StatusNotFound)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade has answered with the HTTP error
		}
		defer c.Close()
		// Upgrade cleared the deadlines http.Server had set (ReadTimeout
		// must not cut a live session); CONNECT gets its own, which mochi
		// replaces with the keep-alive deadline.
		if l.connectTimeout > 0 {
			_ = c.SetReadDeadline(time.Now().Add(l.connectTimeout))
		}
		l.logEnd(establish(l.id, &wsConn{Conn: c.UnderlyingConn(), c: c, timeout: l.writeTimeout}))
	})
	var ln net.Listener = l.ln
	if l.tls != nil {
		// http.Server handshakes on the connection's goroutine, within its
		// read header timeout.
		ln = tls.NewListener(l.ln, l.tls)
	}
	_ = l.http.Serve(ln)
}

// wsConn is a net.Conn over a WebSocket: MQTT packets travel in binary
// messages, and one message may hold several packets or part of one.
type wsConn struct {
	net.Conn
	c       *websocket.Conn
	r       io.Reader
	mu      sync.Mutex // serialises writes
	timeout time.Duration
}

var errTextFrame = errors.New("websocket: MQTT needs binary messages")

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errTextFrame
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			if n == 0 {
				continue
			}
			return n, nil
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.timeout > 0 {
		_ = ws.c.SetWriteDeadline(time.Now().Add(ws.timeout))
	}
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		if isTimeout(err) {
			ws.c.Close()
		}
		return 0, err
	}
	return len(p), nil
}

func (ws *wsConn) Close() error { return ws.c.Close() }

// NetConn returns the connection under the WebSocket (a *tls.Conn for wss).
func (ws *wsConn) NetConn() net.Conn { return ws.Conn }

// SetDeadline sets the read deadline only: mochi calls it with the
// keep-alive expiry, and writes have their own bound (Write).
func (ws *wsConn) SetDeadline(t time.Time) error { return ws.c.SetReadDeadline(t) }

func (ws *wsConn) SetReadDeadline(t time.Time) error { return ws.c.SetReadDeadline(t) }

// SetWriteDeadline is ignored: each Write sets its own deadline.
func (ws *wsConn) SetWriteDeadline(time.Time) error { return nil }

// deadlineConn bounds every write to a client and closes the connection
// when one times out. mochi writes to a client while holding that client's
// lock, which its fan-out also takes; a client that stops reading (while
// still sending keep-alives, which push mochi's own deadline forward) would
// otherwise hold every publisher delivering to it — and, through TCP
// buffers, possibly the client's own publishers in a cycle. Closed, it
// catches up when it reconnects.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.timeout > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	n, err := c.Conn.Write(p)
	if err != nil && isTimeout(err) {
		c.Conn.Close()
	}
	return n, err
}

// NetConn returns the connection it wraps (a *tls.Conn for mqtts).
func (c *deadlineConn) NetConn() net.Conn { return c.Conn }

// SetDeadline sets the read deadline only: mochi calls it with the
// keep-alive expiry, and writes have their own bound.
func (c *deadlineConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// SetWriteDeadline is ignored: each Write sets its own deadline.
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Accept back-off, as net/http.Server.Serve does it: 5 ms doubling to 1 s.
const (
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
	// stuckWindow: a listener whose latest Accept failed less than this long
	// ago, with no success since, is not ready. A loop in back-off retries
	// at least every maxAcceptDelay, so a lasting failure keeps it fresh.
	stuckWindow = 2 * maxAcceptDelay
)

// States of a gatedListener's accept loop.
const (
	gateIdle    int32 = iota // Serve not called yet
	gateServing              // Serve is accepting
	gateStopped              // Serve returned
)

// connMetrics are the admission metrics of the node's listeners.
type connMetrics struct {
	acceptErrors *prometheus.CounterVec // listener
	refused      *prometheus.CounterVec // listener, reason
	open         *prometheus.GaugeVec   // listener
}

func newConnMetrics(reg prometheus.Registerer) *connMetrics {
	m := &connMetrics{
		acceptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_accept_errors_total",
			Help: "Accept errors of an MQTT or WebSocket listener (EMFILE when descriptors run out); each is retried after a back-off."},
			[]string{"listener"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_connections_refused_total",
			Help: "Connections closed at accept: max_connections (the listener's limit), per_ip (limits.max_connections_per_ip), rate (limits.connect_rate_per_ip)."},
			[]string{"listener", "reason"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "parley_listener_connections",
			Help: "Open connections of an MQTT or WebSocket listener, CONNECT sent or not."}, []string{"listener"}),
	}
	reg.MustRegister(m.acceptErrors, m.refused, m.open)
	return m
}

// Reasons a connection is refused at accept (the reason label of
// parley_connections_refused_total).
const (
	refusedMaxConns = "max_connections"
	refusedPerIP    = "per_ip"
	refusedRate     = "rate"
)

// gatedListener admits the connections of one MQTT or WebSocket listener.
// Its Accept survives every error but net.ErrClosed — a temporary EMFILE
// when descriptors run out must not end the accept loop for good — backing
// off as net/http.Server.Serve does, logging (at most every logEvery) and
// counting. It closes at once the connections over the listener's limit or
// their address's (ipLimiter), and reports whether it is healthy for /readyz.
type gatedListener struct {
	net.Listener
	id   string
	max  int64      // open connections allowed; 0: no limit
	ips  *ipLimiter // shared by the node's listeners; nil: no per-IP limits
	log  *slog.Logger
	done chan struct{} // closed by Close
	once sync.Once

	acceptErrors prometheus.Counter
	refused      map[string]prometheus.Counter
	openGauge    prometheus.Gauge

	open    atomic.Int64 // connections accepted and not closed yet
	lastErr atomic.Int64 // unix nanoseconds of the latest Accept error
	lastOK  atomic.Int64 // unix nanoseconds of the latest successful Accept
	state   atomic.Int32 // gateIdle, gateServing, gateStopped
	closed  atomic.Bool

	mu      sync.Mutex // guards the fields below
	conns   map[*trackedConn]struct{}
	drained chan struct{} // closed when conns empties after Close; nil before

	errLog, refuseLog logThrottle
}

func newGatedListener(id string, ln net.Listener, max int, ips *ipLimiter, m *connMetrics, log *slog.Logger) *gatedListener {
	l := &gatedListener{Listener: ln, id: id, max: int64(max), ips: ips, log: log, done: make(chan struct{}),
		acceptErrors: m.acceptErrors.WithLabelValues(id), openGauge: m.open.WithLabelValues(id),
		refused: map[string]prometheus.Counter{}, conns: map[*trackedConn]struct{}{}}
	for _, r := range []string{refusedMaxConns, refusedPerIP, refusedRate} {
		l.refused[r] = m.refused.WithLabelValues(id, r)
	}
	return l
}

// Accept returns the next admitted connection, or net.ErrClosed once the
// listener is closed.
func (l *gatedListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		now := time.Now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.closed.Load() {
				return nil, net.ErrClosed
			}
			if delay == 0 {
				delay = minAcceptDelay
			} else {
				delay = min(2*delay, maxAcceptDelay)
			}
			l.lastErr.Store(now.UnixNano())
			l.acceptErrors.Inc()
			if ok, suppressed := l.errLog.allow(now); ok {
				l.log.Warn("accept failed, retrying", "listener", l.id, "error", err, "retry_in", delay, "suppressed", suppressed)
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		l.lastOK.Store(now.UnixNano())
		if tc := l.admit(c, now); tc != nil {
			return tc, nil
		}
	}
}

// admit counts c against the limits and returns it tracked, or closes it
// and returns nil. The client sees its connection closed before any packet.
func (l *gatedListener) admit(c net.Conn, now time.Time) net.Conn {
	reason := ""
	ip, hasIP := ipKey(c.RemoteAddr())
	if n := l.open.Add(1); l.max > 0 && n > l.max {
		reason = refusedMaxConns
	} else if hasIP && l.ips != nil {
		reason = l.ips.admit(ip, now)
	}
	if reason != "" {
		l.open.Add(-1)
		l.refused[reason].Inc()
		_ = c.Close()
		if ok, suppressed := l.refuseLog.allow(now); ok {
			l.log.Warn("connection refused", "listener", l.id, "reason", reason, "remote", ip, "suppressed", suppressed)
		}
		return nil
	}
	tc := &trackedConn{Conn: c, l: l, ip: ip, hasIP: hasIP && l.ips != nil}
	l.mu.Lock()
	if l.closed.Load() { // accepted as Close ran: drain would miss it
		l.mu.Unlock()
		tc.Close()
		return nil
	}
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	l.openGauge.Inc()
	return tc
}

func (l *gatedListener) release(c *trackedConn) {
	l.open.Add(-1)
	if c.hasIP {
		l.ips.release(c.ip)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[c]; ok {
		delete(l.conns, c)
		l.openGauge.Dec()
	}
	if len(l.conns) == 0 && l.drained != nil {
		close(l.drained)
		l.drained = nil
	}
}

// Close closes the listener; a back-off in progress ends at once.
func (l *gatedListener) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed.Store(true)
		l.mu.Unlock()
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}

// drain, after Close, closes the connections still open and waits until
// their owners (mochi, net/http) have given them back, or ctx ends. Waiting
// for the owners, rather than counting them closed here, orders everything
// their goroutines did before (mochi's ClientsWg.Add among it) before
// mochi's CloseAll waits on them.
func (l *gatedListener) drain(ctx context.Context) error {
	l.mu.Lock()
	if len(l.conns) == 0 {
		l.mu.Unlock()
		return nil
	}
	for c := range l.conns {
		_ = c.Conn.Close() // the owner's read fails; it closes c
	}
	done := make(chan struct{})
	l.drained = done
	l.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// check reports why the listener is not serving: its accept loop has
// stopped, or Accept is failing (in back-off).
func (l *gatedListener) check(now time.Time) error {
	if l.closed.Load() {
		return fmt.Errorf("listener %s: closed", l.id)
	}
	if l.state.Load() == gateStopped {
		return fmt.Errorf("listener %s: accept loop stopped", l.id)
	}
	if e := l.lastErr.Load(); e > l.lastOK.Load() && now.Sub(time.Unix(0, e)) < stuckWindow {
		return fmt.Errorf("listener %s: accept failing, in back-off", l.id)
	}
	return nil
}

// trackedConn gives its slot back to the listener and the address when it
// is closed, however it is closed (mochi, net/http, gorilla, a write
// timeout).
type trackedConn struct {
	net.Conn
	l     *gatedListener
	ip    netip.Addr
	hasIP bool
	once  sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}

// CloseWrite lets net/http half-close the connection, as it does with a
// *net.TCPConn, before closing it after an error response.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ipKey returns the address a connection counts against: its IPv4
// address, or its IPv6 /64 (the block one subscriber is usually given, so
// that one host cannot spread over its addresses). ok is false for a
// connection that has no IP address.
func ipKey(a net.Addr) (netip.Addr, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		p, err := ip.Prefix(64)
		if err != nil {
			return netip.Addr{}, false
		}
		ip = p.Addr()
	}
	return ip, ip.IsValid()
}

// maxTrackedIPs bounds ipLimiter's token buckets (about 100 bytes each).
const maxTrackedIPs = 16384

// ipLimiter bounds, across the node's MQTT and WebSocket listeners, the
// open connections of each client address and the rate of its new ones (a
// token bucket per address). Open counts exist only while connections do, so
// they are bounded by the listeners' limits; buckets are at most maxTracked:
// when full, buckets that have refilled (forgetting them changes nothing)
// are dropped, at most once a second, and otherwise an arbitrary one.
type ipLimiter struct {
	maxOpen    int     // open connections per address; 0: no limit
	rate       float64 // new connections a second per address; 0: no limit
	burst      float64
	maxTracked int

	mu      sync.Mutex // guards the fields below
	open    map[netip.Addr]int
	buckets map[netip.Addr]*tokenBucket
	swept   time.Time
}

type tokenBucket struct {
	tokens float64
	at     time.Time
}

// newIPLimiter returns nil when neither limit is set.
func newIPLimiter(maxOpen int, rate float64, burst int) *ipLimiter {
	if maxOpen <= 0 && rate <= 0 {
		return nil
	}
	g := &ipLimiter{maxOpen: max(maxOpen, 0), rate: max(rate, 0), burst: float64(max(burst, 1)), maxTracked: maxTrackedIPs,
		open: map[netip.Addr]int{}, buckets: map[netip.Addr]*tokenBucket{}}
	return g
}

// admit counts a new connection from ip, or returns why it is refused
// (refusedPerIP, refusedRate).
func (g *ipLimiter) admit(ip netip.Addr, now time.Time) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.maxOpen > 0 && g.open[ip] >= g.maxOpen {
		return refusedPerIP
	}
	if g.rate > 0 {
		b := g.buckets[ip]
		if b == nil {
			g.makeRoom(now)
			b = &tokenBucket{tokens: g.burst, at: now}
			g.buckets[ip] = b
		}
		b.tokens = min(g.burst, b.tokens+now.Sub(b.at).Seconds()*g.rate)
		b.at = now
		if b.tokens < 1 {
			return refusedRate
		}
		b.tokens--
	}
	g.open[ip]++
	return ""
}

// makeRoom keeps the buckets under maxTracked before one is added.
func (g *ipLimiter) makeRoom(now time.Time) {
	if len(g.buckets) < g.maxTracked {
		return
	}
	if now.Sub(g.swept) >= time.Second {
		g.swept = now
		for ip, b := range g.buckets {
			if b.tokens+now.Sub(b.at).Seconds()*g.rate >= g.burst {
				delete(g.buckets, ip)
			}
		}
	}
	for ip := range g.buckets {
		if len(g.buckets) < g.maxTracked {
			break
		}
		delete(g.buckets, ip)
	}
}

func (g *ipLimiter) release(ip netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open[ip] <= 1 {
		delete(g.open, ip)
	} else {
		g.open[ip]--
	}
}

// logThrottle lets a repeated warning through at most once every logEvery,
// counting the ones it held back.
type logThrottle struct {
	mu         sync.Mutex // guards the fields below
	last       time.Time
	suppressed int
}

const logEvery = 10 * time.Second

func (t *logThrottle) allow(now time.Time) (ok bool, suppressed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.last.IsZero() && now.Sub(t.last) < logEvery {
		t.suppressed++
		return false, 0
	}
	suppressed, t.last, t.suppressed = t.suppressed, now, 0
	return true, suppressed
}

// keepaliveBound gives a client the server's keep-alive when its own is 0
// (none) or above max, so that no connection escapes the read deadline mochi
// derives from it (1.5 × keep-alive [MQTT-3.1.2-22]): an MQTT 5 client learns
// it from CONNACK's Server Keep Alive [MQTT-3.2.2-21] (mochi sends it when
// State.ServerKeepalive is set in OnConnect); a 3.1.1 client cannot be told,
// and is disconnected after 1.5 × max of silence, as 3.1.1 permits ("a Server
// is permitted to disconnect a Client that it determines to be inactive",
// 3.1.2.10). Runs on the client's goroutine before CONNACK; touches only
// that client's state.
type keepaliveBound struct {
	mqtt.HookBase
	max uint16
}

func (h *keepaliveBound) ID() string { return "parley-keepalive" }

func (h *keepaliveBound) Provides(b byte) bool { return b == mqtt.OnConnect }

func (h *keepaliveBound) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if ka := cl.State.Keepalive; ka == 0 || ka > h.max {
		cl.State.Keepalive, cl.State.ServerKeepalive = h.max, true
	}
	return nil
}
