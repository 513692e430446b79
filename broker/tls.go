package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
)

// TLSConfig configures TLS on the node's listeners (docs/security.md). With
// CertFile empty no listener uses TLS and the other fields are ignored.
//
// The certificate is reloaded without a restart: at a TLS handshake, at
// most every ReloadCheck, both files are looked at (os.Stat: file identity,
// size, modification time); when either changed the pair is read again. A
// pair that does not load (half written, mismatched, not PEM) is logged
// as an error and counted, and the previous one stays in use until
// the files change again. Connections already open keep the certificate
// they were made with.
type TLSConfig struct {
	// CertFile holds the certificate chain (PEM, leaf first) and KeyFile its
	// private key (PEM). Both or neither.
	CertFile, KeyFile string
	// ClientCAFile, when set, holds the CA certificates (PEM) whose client
	// certificates the TLS listeners accept. A client certificate is
	// optional for users; an administrator must then present one signed by
	// these CAs whose subject Common Name is the administrator's name, in
	// addition to the password, on MQTT (the CONNECT username) and on HTTP
	// (the Basic auth name) alike, so administrators can sign in only over
	// TLS. Read once at start.
	ClientCAFile string
	// MQTTAddr is the MQTT-over-TLS listener's address. Default ":8883".
	MQTTAddr string
	// WS serves MQTT over WebSocket with TLS (wss) on WSAddr instead of
	// plain ws. Default false.
	WS bool
	// HTTP serves the HTTP API and the web app with TLS (https) on HTTPAddr
	// instead of plain HTTP. Default false.
	HTTP bool
	// ReloadCheck is the least time between two looks at the files.
	// Default 5s.
	ReloadCheck time.Duration
}

func (c *TLSConfig) setDefaults() {
	if c.MQTTAddr == "" {
		c.MQTTAddr = ":8883"
	}
	if c.ReloadCheck <= 0 {
		c.ReloadCheck = 5 * time.Second
	}
}

// nodeTLS is the TLS state the node's listeners share: one certificate
// reloader, and the client CAs.
type nodeTLS struct {
	certs     *certReloader
	clientCAs *x509.CertPool // nil: client certificates are not asked for
}

// newNodeTLS loads the certificate pair and the client CAs; a pair that does
// not load is an error here (at start), unlike at a reload.
func newNodeTLS(cfg TLSConfig, reg prometheus.Registerer, log *slog.Logger) (*nodeTLS, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("tls: a certificate needs both its file and its key's (CertFile, KeyFile)")
	}
	n := &nodeTLS{certs: newCertReloader(cfg.CertFile, cfg.KeyFile, cfg.ReloadCheck, reg, log)}
	if err := n.certs.load(time.Now()); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	if cfg.ClientCAFile != "" {
		b, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client CAs: %w", err)
		}
		n.clientCAs = x509.NewCertPool()
		if !n.clientCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tls: client CAs: no PEM certificate in %s", cfg.ClientCAFile)
		}
	}
	return n, nil
}

// config returns a server configuration offering the application protocols
// nextProtos (ALPN).
func (n *nodeTLS) config(nextProtos ...string) *tls.Config {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: n.certs.GetCertificate,
		NextProtos:     nextProtos,
	}
	if n.clientCAs != nil {
		// Users have no certificate: one is asked for, verified when
		// given, never required. Administrators are checked afterwards
		// (adminCertGate, requireAdminCert).
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.ClientCAs = n.clientCAs
	}
	return c
}

// certReloader serves the certificate pair of two files and reads it again
// when they change (see TLSConfig).
type certReloader struct {
	certFile, keyFile string
	every             time.Duration
	log               *slog.Logger
	reloads           *prometheus.CounterVec // result: ok, error
	notAfter          prometheus.Gauge

	mu      sync.Mutex // guards the fields below
	cert    *tls.Certificate
	seen    [2]os.FileInfo // the files as last read (or tried); nil: missing
	checked time.Time      // the last look at the files
}

func newCertReloader(certFile, keyFile string, every time.Duration, reg prometheus.Registerer, log *slog.Logger) *certReloader {
	r := &certReloader{certFile: certFile, keyFile: keyFile, every: every, log: log,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_tls_certificate_reloads_total",
			Help: "Loads of tls.cert_file and tls.key_file after they changed: ok, or error (the previous pair stays in use)."},
			[]string{"result"}),
		notAfter: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate in use expires (Unix time): alert well before it."}),
	}
	reg.MustRegister(r.reloads, r.notAfter)
	return r
}

// GetCertificate implements tls.Config.GetCertificate. It runs on the
// handshaking connection's goroutine; the files are looked at by one
// handshake at most every r.every, the others wait for that look.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= r.every {
		r.checked = now
		if r.changed() {
			if err := r.loadLocked(); err != nil {
				r.reloads.WithLabelValues("error").Inc()
				r.log.Error("tls certificate not reloaded: the previous one stays in use until the files change again",
					"cert_file", r.certFile, "key_file", r.keyFile, "error", err)
			} else {
				r.reloads.WithLabelValues("ok").Inc()
				leaf := r.cert.Leaf
				r.log.Info("tls certificate reloaded", "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.String(),
					"not_after", leaf.NotAfter)
			}
		}
	}
	return r.cert, nil
}

// load reads the pair at start.
func (r *certReloader) load(now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checked = now
	r.changed() // records the files as seen
	return r.loadLocked()
}

// changed reports whether either file differs from when it was last seen,
// and records it as seen: a bad pair is tried once, not at every check.
func (r *certReloader) changed() bool {
	diff := false
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name) // follows symlinks: a swapped link is a change
		if err != nil {
			fi = nil
		}
		if !sameFile(fi, r.seen[i]) {
			diff = true
		}
		r.seen[i] = fi
	}
	return diff
}

func sameFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	// SameFile compares device and inode: a file renamed over the old one
	// (how cert-manager and certbot's deploy hooks replace them) differs
	// even with the same size and time.
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func (r *certReloader) loadLocked() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("certificate %s, key %s: %w", r.certFile, r.keyFile, err)
	}
	if c.Leaf == nil { // LoadX509KeyPair fills it in; be sure
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("certificate %s: %w", r.certFile, err)
		}
	}
	r.cert = &c
	r.notAfter.Set(float64(c.Leaf.NotAfter.Unix()))
	return nil
}

// connState returns the TLS state of a client's connection, unwrapping
// Parley's connection types (deadlineConn, wsConn) down to the *tls.Conn;
// nil for a connection without TLS.
func connState(c net.Conn) *tls.ConnectionState {
	for c != nil {
		switch v := c.(type) {
		case *tls.Conn:
			cs := v.ConnectionState()
			return &cs
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// certNames reports whether the connection presented a client certificate,
// verified against the client CAs, whose subject Common Name is name.
func certNames(cs *tls.ConnectionState, name string) bool {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return false
	}
	return name != "" && cs.VerifiedChains[0][0].Subject.CommonName == name
}

// adminCertGate refuses an administrator's CONNECT that did not come with a
// client certificate naming the administrator (TLSConfig.ClientCAFile). It
// runs before the Auth hook, on the client's goroutine, and looks only at
// the connection's TLS state. The refusal is the one a wrong password gets
// (v5 0x86, 3.1.1 4), so that it tells a guesser nothing more; the log line
// tells the operator.
type adminCertGate struct {
	mqtt.HookBase
	isAdmin func(string) bool
	log     *slog.Logger
}

func (h *adminCertGate) ID() string { return "parley-admin-cert" }

func (h *adminCertGate) Provides(b byte) bool { return b == mqtt.OnConnect }

func (h *adminCertGate) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	user := string(pk.Connect.Username)
	if !h.isAdmin(user) || certNames(connState(cl.Net.Conn), user) {
		return nil
	}
	h.log.Warn("administrator refused: no client certificate naming them (tls.client_ca_file)",
		"user", user, "client", cl.ID, "listener", cl.Net.Listener, "remote", cl.Net.Remote)
	code := packets.ErrBadUsernameOrPassword
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code.Code}
	if cl.Properties.ProtocolVersion < 5 {
		ack.ReasonCode = 0x04 // 3.1.1: bad user name or password
	} else {
		ack.Properties.ReasonString = code.Reason
	}
	if err := cl.WritePacket(ack); err != nil {
		h.log.Debug("connack not sent", "client", cl.ID, "error", err)
	}
	return code
}

// requireAdminCert answers 401, as to a wrong password, a request with an
// administrator's Basic credentials that did not come with a client
// certificate naming that administrator (TLSConfig.ClientCAFile); the API
// then checks the password of the others.
func requireAdminCert(next http.Handler, isAdmin func(string) bool, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, _, ok := r.BasicAuth(); ok && isAdmin(id) && !certNames(r.TLS, id) {
			log.Warn("administrator refused: no client certificate naming them (tls.client_ca_file)",
				"user", id, "listener", "http", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Basic realm="parley admin"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"administrator credentials required"}` + "\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// httpErrorLog routes an http.Server's own log lines to log: failed TLS
// handshakes (port scanners, clients that do not trust the certificate) at
// debug level, anything else at warn. Without it they go to the standard
// logger, outside slog.
func httpErrorLog(log *slog.Logger, listener string) *stdlog.Logger {
	return stdlog.New(httpLogWriter{log: log, listener: listener}, "", 0)
}

type httpLogWriter struct {
	log      *slog.Logger
	listener string
}

func (w httpLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, "http server", "listener", w.listener, "error", msg)
	return len(p), nil
}
