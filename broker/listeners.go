package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// streamListener serves MQTT on a listener Parley bound itself, so that a
// taken port is reported by Start (naming the setting that moves it) and a
// :0 port is known before clients connect. mochi's own listeners bind later
// and log every client's EOF as a warning with an empty message.
type streamListener struct {
	id    string
	proto string
	ln    net.Listener
	log   *slog.Logger
	wg    sync.WaitGroup
	once  sync.Once
	// http, if set, serves MQTT over WebSocket; otherwise raw TCP
	// connections are accepted.
	http        *http.Server
	wsPath      string
	allowOrigin func(*http.Request) bool
	// writeTimeout bounds each write to a client (see deadlineConn).
	writeTimeout time.Duration
	// closeOwn disconnects the listener's clients when it closes.
	closeOwn func(listener string)
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
	if l.http != nil {
		l.serveWS(establish)
		return
	}
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.logEnd(establish(l.id, &deadlineConn{Conn: conn, timeout: l.writeTimeout}))
		}()
	}
}

// logEnd logs how a connection ended, unless it ended the ordinary way.
func (l *streamListener) logEnd(err error) {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
		return
	}
	l.log.Debug("connection ended", "listener", l.id, "error", err)
}

func (l *streamListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		// mochi's own closer (closeListenerClients) reads its client map
		// with GetByListener, which takes the map's read lock twice and
		// deadlocks against a client disconnecting at the same moment
		// (v2.7.9); closeOwn does the same work with one read lock.
		if l.closeOwn != nil {
			l.closeOwn(l.id)
		} else {
			closeClients(l.id)
		}
		if l.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = l.http.Shutdown(ctx)
		}
		_ = l.ln.Close()
	})
}

// newWebSocketListener serves MQTT over WebSocket at path on ln, with the
// "mqtt" subprotocol. allowOrigin decides which browser origins may connect.
func newWebSocketListener(id string, ln net.Listener, path string, allowOrigin func(*http.Request) bool, log *slog.Logger) *streamListener {
	return &streamListener{id: id, proto: "ws", ln: ln, log: log, wsPath: path, allowOrigin: allowOrigin,
		http: &http.Server{ReadHeaderTimeout: 10 * time.Second}}
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
		l.logEnd(establish(l.id, &wsConn{Conn: c.UnderlyingConn(), c: c, timeout: l.writeTimeout}))
	})
	_ = l.http.Serve(l.ln)
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

// SetDeadline sets the read deadline only: mochi calls it with the
// keep-alive expiry, and writes have their own bound.
func (c *deadlineConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// SetWriteDeadline is ignored: each Write sets its own deadline.
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
