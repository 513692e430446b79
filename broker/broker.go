// Package broker assembles a Parley node: the embedded mochi-mqtt broker
// with Parley's hooks, its MQTT (TCP) and MQTT-over-WebSocket listeners, and
// the HTTP server of the JSON API, health checks and metrics.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/cluster"
	"github.com/parleychat/parley/consent"
	"github.com/parleychat/parley/groups"
	"github.com/parleychat/parley/hooks"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/storage"
)

// Config configures a node. The zero value of each field means its default.
type Config struct {
	// MQTTAddr is the MQTT (TCP) listener's address. Default ":1883".
	MQTTAddr string
	// WSAddr is the MQTT-over-WebSocket listener's address. Default ":8083".
	WSAddr string
	// WSPath is the WebSocket endpoint's path. Default "/mqtt".
	WSPath string
	// AllowedOrigins lists the browser origins (scheme://host:port) allowed
	// to open WebSockets (originAllowed). Empty: pages of the host the
	// WebSocket is opened on, the web app's own; "*" allows any. A request
	// without Origin (not a browser) is always allowed.
	AllowedOrigins []string
	// HTTPAddr is the HTTP API's address. Default ":8080".
	HTTPAddr string
	// MaxPayload is the largest message payload. Default 64 KiB.
	MaxPayload int
	// WriteTimeout bounds each write to a client's connection; a client that
	// does not read for this long is disconnected (and catches up when it
	// returns). Default 10s.
	WriteTimeout time.Duration
	// WritesPending sizes each client's outbound queue (mochi's
	// MaximumClientWritesPending): 8 bytes a slot, allocated when the client
	// connects. A subscriber whose queue overflows is disconnected and
	// catches up when it returns. Default 256: saturating group and DM loads
	// never filled it, and 1024 cost 6 KiB more per connection (see
	// bench/README.md).
	WritesPending int
	// MaxGroupMembers is the largest group. Default 1024.
	MaxGroupMembers int
	// GroupLimits bound how fast each user creates groups and adds
	// members, on this node (groups.Limits; zero values take its defaults).
	GroupLimits groups.Limits
	// Pprof serves Go's profiles (net/http/pprof) under /debug/pprof/ on
	// HTTPAddr (MetricsAddr when set), for measuring; keep that address
	// private. Default off.
	Pprof bool
	// MetricsAddr, when set, serves /metrics (and /debug/pprof/ with Pprof)
	// on this address instead of HTTPAddr, so that they can stay private
	// while the API is public. Default "": on HTTPAddr.
	MetricsAddr string
	// AdminAddr, when set, serves the API with administrators' HTTP
	// (/v1/admin/…, /v1/cluster, HTTP Basic auth of administrators) on this
	// address, with HTTPAddr's TLS; HTTPAddr then answers 404 to them, so
	// that the administrators' password cannot be tried from where users
	// come. Default "": administrators on HTTPAddr.
	AdminAddr string
	// TLS serves MQTT over TLS on TLS.MQTTAddr and, as set, wss on WSAddr
	// and https on HTTPAddr, from certificate files reloaded when they
	// change; optional client certificates for administrators. Empty
	// TLS.CertFile: no TLS.
	TLS TLSConfig

	// ConnectTimeout closes a connection (TCP or WebSocket) that has not
	// sent a complete CONNECT this long after it was accepted (after its
	// WebSocket upgrade). Default 10s.
	ConnectTimeout time.Duration
	// MaxKeepalive bounds the keep-alive: a client asking for 0 (none) or
	// more is given this one (MQTT 5: CONNACK's Server Keep Alive; 3.1.1:
	// disconnected after 1.5 × MaxKeepalive of silence). Whole seconds, at
	// most 65535s. Default 300s.
	MaxKeepalive time.Duration
	// MaxConnections bounds each MQTT and WebSocket listener's open
	// connections (CONNECT sent or not); more are closed at accept.
	// Default 50000; negative: no limit.
	MaxConnections int
	// MaxConnectionsPerIP bounds the open connections of one client address
	// (an IPv6 /64) across the MQTT and WebSocket listeners; more are closed
	// at accept. Default 1000 (a carrier NAT puts many devices behind one
	// address); negative: no limit.
	MaxConnectionsPerIP int
	// ConnectRatePerIP bounds the new connections a second of one client
	// address (an IPv6 /64), with ConnectBurstPerIP above it; more are
	// closed at accept. Default 50; negative: no limit.
	ConnectRatePerIP float64
	// ConnectBurstPerIP is the burst above ConnectRatePerIP. Default 200.
	ConnectBurstPerIP int

	// HTTPReadTimeout bounds reading a whole request, body included, on the
	// API (and the WebSocket listener before its upgrade). Default 30s.
	HTTPReadTimeout time.Duration
	// HTTPReadHeaderTimeout bounds reading a request's headers. Default 10s
	// (the WebSocket listener uses the shorter of it and ConnectTimeout).
	HTTPReadHeaderTimeout time.Duration
	// HTTPIdleTimeout closes a keep-alive connection idle this long between
	// requests. Default 120s.
	HTTPIdleTimeout time.Duration
	// HTTPMaxHeaderBytes bounds a request's headers. Default 65536.
	HTTPMaxHeaderBytes int
	// Auth bounds connections: client id length, connections per user.
	Auth hooks.AuthConfig
	// Inbox tunes stamping, catch-up, receipts and cursors.
	Inbox hooks.InboxConfig
	// Presence tunes presence (last-seen writes, status update rate).
	Presence hooks.PresenceConfig
	// Push tunes the push service (grace period, workers); used when
	// Deps.Push is set.
	Push push.ServiceConfig
	// MaxPushDevices is the most push tokens one user keeps: registering
	// one more deletes the user's least recently updated (POST
	// /v1/devices). Default 10.
	MaxPushDevices int
	// Maintenance prunes expired tokens, old idempotency keys and the
	// cursors of devices gone for good.
	Maintenance MaintenanceConfig
	// Cluster joins the node to a cluster through NATS. Empty NATSURL: a
	// single node.
	Cluster ClusterConfig
	// SessionCheck is how often the node asks the store whether the tokens
	// of its MQTT connections are still valid, and ends the connections of
	// those that are not (revoked while the node did not hear of it, or
	// expired). Default 1m.
	SessionCheck time.Duration
}

// ClusterConfig configures a node of a cluster.
type ClusterConfig struct {
	// NATSURL lists the NATS servers (comma separated); empty: one node.
	NATSURL string
	// Node is the node's name, unique in the cluster; its metrics carry it
	// as the label node. Required with NATSURL.
	Node string
	// Heartbeat is how often the node tells the others it is alive.
	// Default 1s.
	Heartbeat time.Duration
	// NodeTimeout is how long a node may go unheard before the others
	// show its users' devices offline. Default 10s.
	NodeTimeout time.Duration
}

func (c *Config) setDefaults() {
	c.Maintenance.setDefaults()
	if c.SessionCheck <= 0 {
		c.SessionCheck = time.Minute
	}
	c.TLS.setDefaults()
	if c.MQTTAddr == "" {
		c.MQTTAddr = ":1883"
	}
	if c.WSAddr == "" {
		c.WSAddr = ":8083"
	}
	if c.WSPath == "" {
		c.WSPath = "/mqtt"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":8080"
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = 64 << 10
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.WritesPending <= 0 {
		c.WritesPending = 256
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.MaxKeepalive <= 0 {
		c.MaxKeepalive = 300 * time.Second
	}
	c.MaxConnections = limitDefault(c.MaxConnections, 50000)
	c.MaxConnectionsPerIP = limitDefault(c.MaxConnectionsPerIP, 1000)
	if c.ConnectRatePerIP == 0 {
		c.ConnectRatePerIP = 50
	}
	if c.ConnectBurstPerIP <= 0 {
		c.ConnectBurstPerIP = 200
	}
	if c.HTTPReadTimeout <= 0 {
		c.HTTPReadTimeout = 30 * time.Second
	}
	if c.HTTPReadHeaderTimeout <= 0 {
		c.HTTPReadHeaderTimeout = 10 * time.Second
	}
	if c.HTTPIdleTimeout <= 0 {
		c.HTTPIdleTimeout = 120 * time.Second
	}
	if c.HTTPMaxHeaderBytes <= 0 {
		c.HTTPMaxHeaderBytes = 64 << 10
	}
	c.Inbox.MaxPayload = c.MaxPayload
	if c.Inbox.MaxSessionExpiry <= 0 {
		c.Inbox.MaxSessionExpiry = hooks.DefaultMaxSessionExpiry
	}
}

// limitDefault: 0 means def, a negative value no limit (0 to the code).
func limitDefault(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// groups returns the configuration of the node's groups.Service.
func (c *Config) groups(consent groups.Consent) groups.Config {
	return groups.Config{MaxMembers: c.MaxGroupMembers, Limits: c.GroupLimits, Consent: consent}
}

// newHTTPServer returns an http.Server with the configured timeouts. It
// sets no WriteTimeout: a CPU profile streams for as long as it is asked.
func (c *Config) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadTimeout: c.HTTPReadTimeout, ReadHeaderTimeout: c.HTTPReadHeaderTimeout,
		IdleTimeout: c.HTTPIdleTimeout, MaxHeaderBytes: c.HTTPMaxHeaderBytes}
}

// topicAliasMaximum is the Topic Alias Maximum announced to MQTT 5 clients.
const topicAliasMaximum = 16

// Deps are the parts a node is built from.
type Deps struct {
	Store    storage.Store
	Accounts *auth.Service
	Log      *slog.Logger
	// Registry receives the node's metrics; /metrics serves it. Optional.
	Registry *prometheus.Registry
	// Static serves the web app at /. Optional.
	Static http.Handler
	// Push sends push notifications to offline users (a push.Router).
	// Optional: nil turns push off. The store must then queue push jobs
	// (postgres.Config.PushJobs, sqlite.Config.PushJobs).
	Push push.Sender
}

// Server is a running Parley node.
type Server struct {
	cfg   Config
	log   *slog.Logger
	mqtt  *mqtt.Server
	inbox *hooks.Inbox
	// presence keeps p/{user}; it runs after inbox, which passes it the
	// publishes and wills on a user's own presence.
	presence *hooks.Presence
	consent  *consent.Service // blocks, contact lists, group adds
	bus      *cluster.Bus     // nil on a single node
	sessions *sessions        // the connections' tokens; the account routes
	api      *api.API
	push     *push.Service // nil when push is off
	maint    *maintainer
	http     *http.Server
	reg      *prometheus.Registry
	regr     prometheus.Registerer // registers into reg, with the node's name in a cluster
	// metricsHTTP serves /metrics and /debug/pprof/ on Config.MetricsAddr;
	// nil when they are served on HTTPAddr.
	metricsHTTP *http.Server
	// adminHTTP serves the API with administrators' routes on
	// Config.AdminAddr; nil when they are served on HTTPAddr.
	adminHTTP   *http.Server
	adminLn     net.Listener
	adminDone   chan struct{}
	ips         *ipLimiter // shared by the MQTT and WebSocket listeners
	connMetrics *connMetrics
	tls         *nodeTLS // nil without TLS

	mqttLn, mqttsLn, wsLn, httpLn, metricsLn net.Listener
	// mqttGate, mqttsGate (nil without TLS) and wsGate admit the MQTT and
	// WebSocket listeners' connections; readiness checks them.
	mqttGate, mqttsGate, wsGate *gatedListener
	started                     atomic.Bool
	closeOnce                   sync.Once
	httpDone, metricsDone       chan struct{}
}

// New builds a node; Start binds its listeners.
func New(cfg Config, d Deps) (*Server, error) {
	cfg.setDefaults()
	if d.Store == nil || d.Accounts == nil {
		return nil, errors.New("broker: store and accounts are required")
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := d.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	// regr registers the node's metrics: in a cluster, each carries the
	// node's name.
	var regr prometheus.Registerer = reg
	if cfg.Cluster.NATSURL != "" {
		if cfg.Cluster.Node == "" {
			return nil, errors.New("broker: a cluster node needs a name (cluster.node)")
		}
		regr = prometheus.WrapRegistererWith(prometheus.Labels{"node": cfg.Cluster.Node}, reg)
	}
	for _, o := range cfg.AllowedOrigins {
		if o == "*" {
			continue
		}
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("broker: allowed origin %q must look like https://host[:port]", o)
		}
	}

	var nt *nodeTLS
	if cfg.TLS.CertFile != "" || cfg.TLS.KeyFile != "" || cfg.TLS.ClientCAFile != "" {
		var err error
		if nt, err = newNodeTLS(cfg.TLS, regr, log.With("component", "tls")); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}

	caps := mqtt.NewDefaultServerCapabilities()
	// Payloads a little over the limit get Parley's 0x95 in a PUBACK; far
	// larger packets are refused by the broker while reading them.
	caps.MaximumPacketSize = uint32(cfg.MaxPayload + 16<<10)
	caps.MaximumClientWritesPending = int32(cfg.WritesPending)
	caps.MaximumSessionExpiryInterval = uint32(min(cfg.Inbox.MaxSessionExpiry/time.Second, math.MaxUint32))
	caps.MaximumInflight = 8192
	// Inbound topic aliases are stored before OnPublish can refuse the
	// publish: mochi's default (65,535 per connection) let one client pin
	// gigabytes of refused topics. Parley's topics are short; a few aliases
	// are all a client needs. mochi announces the value in CONNACK.
	caps.TopicAliasMaximum = topicAliasMaximum
	// A PUBACK must not echo the publish's user properties (nor carry
	// reason 0x01): [MQTT-3.4.2] allows only a reason string and the
	// server's own properties.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	srv := mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		InlineClient:             true,
		Logger:                   slog.New(mochiLog{log.Handler()}).With("component", "mqtt"),
		ClientNetReadBufferSize:  2048,
		ClientNetWriteBufferSize: 2048,
		SysTopicResendInterval:   10,
	})
	m := hooks.NewMetrics(regr)
	var pushSvc *push.Service
	if d.Push != nil {
		pcfg := cfg.Push
		pcfg.Registry = regr
		pushSvc = push.NewService(pcfg, d.Store, d.Push, log)
		if prev := cfg.Inbox.OnDelivered; prev != nil {
			cfg.Inbox.OnDelivered = func(user, inbox, id string) { prev(user, inbox, id); pushSvc.Delivered(user, inbox, id) }
		} else {
			cfg.Inbox.OnDelivered = pushSvc.Delivered
		}
	}
	inbox := hooks.NewInbox(cfg.Inbox, d.Store, srv, d.Accounts.IsAdmin, m, log.With("component", "inbox"))
	caps.MaximumSubscriptionFilters = inbox.MaxFilters()
	presence := hooks.NewPresence(cfg.Presence, d.Store, srv, inbox, d.Accounts.IsAdmin, regr, log.With("component", "presence"))
	authHook := hooks.NewAuth(cfg.Auth, d.Accounts, inbox, presence, func(err error) bool { return errors.Is(err, auth.ErrBadCredentials) },
		log.With("component", "auth"))
	if cfg.MaxKeepalive > 65535*time.Second {
		return nil, errors.New("broker: MaxKeepalive must be at most 65535s")
	}
	if err := srv.AddHook(&keepaliveBound{max: uint16(max(cfg.MaxKeepalive/time.Second, 1))}, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if nt != nil && nt.clientCAs != nil {
		// Before Auth: an administrator without a certificate is refused
		// before the password is looked at.
		if err := srv.AddHook(&adminCertGate{isAdmin: d.Accounts.IsAdmin, log: log.With("component", "auth")}, nil); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	if err := srv.AddHook(authHook, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := srv.AddHook(inbox, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := srv.AddHook(presence, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	var bus *cluster.Bus
	if cfg.Cluster.NATSURL != "" {
		var err error
		bus, err = cluster.Connect(cluster.Config{URL: cfg.Cluster.NATSURL, Node: cfg.Cluster.Node,
			Heartbeat: cfg.Cluster.Heartbeat, NodeTimeout: cfg.Cluster.NodeTimeout,
			Connections: func() int64 { return atomic.LoadInt64(&srv.Info.ClientsConnected) }}, regr,
			log.With("component", "cluster"))
		if err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		inbox.UseBus(bus)
		inbox.UseSpread(bus) // limits.user_rate is split between the nodes of a user's connections
		presence.UseDirectory(bus)
		bus.UsePresence(presence)
	}
	// Consent: a change ends the presence subscriptions it no longer
	// allows, here and, told through the bus, on the other nodes.
	cons := consent.New(consent.Config{Changed: func(users ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, u := range users {
			presence.PrivacyChanged(ctx, u)
		}
		if bus != nil {
			bus.Publish(cluster.EventConsent, cluster.Consent{Users: users})
		}
	}}, d.Store)
	inbox.UseBlocks(cons)
	presence.UseBlocks(cons)
	s := &Server{cfg: cfg, log: log, mqtt: srv, inbox: inbox, presence: presence, push: pushSvc, reg: reg, regr: regr, bus: bus, tls: nt, consent: cons,
		httpDone: make(chan struct{}), metricsDone: make(chan struct{}),
		ips:   newIPLimiter(cfg.MaxConnectionsPerIP, cfg.ConnectRatePerIP, cfg.ConnectBurstPerIP),
		maint: newMaintainer(cfg.Maintenance, d.Store, regr, log.With("component", "maintenance"))}
	var pushAPI api.PushStore
	if pushSvc != nil {
		pushAPI = d.Store
	}
	s.registerMetrics()
	for _, c := range d.Accounts.Collectors() { // credential checks: failures, throttled, locked out
		if err := regr.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	apiMetrics := metrics
	if cfg.MetricsAddr != "" {
		apiMetrics = nil
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		var h http.Handler = mux
		if cfg.Pprof {
			h = withPprof(mux)
		}
		s.metricsHTTP = cfg.newHTTPServer(h)
	}
	var clusterFunc func() any
	if bus != nil {
		clusterFunc = s.clusterView
	}
	if err := s.initSessions(d); err != nil {
		if bus != nil {
			bus.Close()
		}
		return nil, err
	}
	// A deleted account's presence is nobody's to see: the subscriptions
	// to it end (PresencePrivacy is ErrNotFound for it), and its block
	// list is forgotten.
	s.sessions.onDeleted = func(user string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		presence.PrivacyChanged(ctx, user)
		cons.Forget(user)
	}
	var groupsBroker groups.Broker = inbox
	var presenceAPI api.Presence = presence
	if bus != nil {
		groupsBroker = clusterGroups{inbox, bus}
		presenceAPI = clusterPresence{presence, bus}
		if err := s.handleEvents(); err != nil {
			bus.Close()
			return nil, err
		}
	}
	s.api = api.New(api.Config{
		Metrics:  apiMetrics,
		Ready:    s.ready,
		Degraded: s.degraded,
		Cluster:  clusterFunc,
		Static:   d.Static,
		Presence: presenceAPI,
		Groups:   groups.New(cfg.groups(cons), d.Store, groupsBroker),
		Consent:  cons,
		Push:     pushAPI,
		Sessions: s.sessions,

		MaxPushDevices: cfg.MaxPushDevices,

		AdminListener: cfg.AdminAddr != "",
	}, d.Accounts, d.Store, log.With("component", "api"))
	var handler http.Handler = s.api
	if nt != nil && nt.clientCAs != nil {
		handler = requireAdminCert(handler, d.Accounts.IsAdmin, log.With("component", "api"))
	}
	if cfg.Pprof && cfg.MetricsAddr == "" {
		handler = withPprof(handler)
	}
	if s.httpTLS() {
		handler = withHSTS(handler)
	}
	s.http = cfg.newHTTPServer(handler)
	if s.httpTLS() {
		s.http.TLSConfig = nt.config() // ServeTLS offers h2 and http/1.1
		s.http.ErrorLog = httpErrorLog(log.With("component", "http"), "http")
	}
	if cfg.AdminAddr != "" {
		s.newAdminHTTP(d, log)
	}
	return s, nil
}

func (s *Server) registerMetrics() {
	info := s.mqtt.Info
	gauge := func(name, help string, v *int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(atomic.LoadInt64(v)) })
	}
	counter := func(name, help string, v *int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(atomic.LoadInt64(v)) })
	}
	s.regr.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		gauge("parley_mqtt_connections", "Connected MQTT clients.", &info.ClientsConnected),
		gauge("parley_mqtt_inflight", "Unacknowledged QoS 1/2 messages across clients.", &info.Inflight),
		counter("parley_mqtt_messages_received_total", "PUBLISH packets received.", &info.MessagesReceived),
		counter("parley_mqtt_messages_sent_total", "PUBLISH packets sent.", &info.MessagesSent),
		counter("parley_mqtt_messages_dropped_total", "Messages the broker dropped for full client queues.", &info.MessagesDropped),
		counter("parley_mqtt_inflight_dropped_total", "QoS messages dropped for full inflight stores.", &info.InflightDropped),
	)
	s.connMetrics = newConnMetrics(s.regr)
}

// ready reports whether the MQTT and WebSocket listeners are accepting: not
// stopped, not failing in back-off (/readyz; the store is checked by api).
func (s *Server) ready(context.Context) error {
	if !s.started.Load() || s.mqttGate == nil || s.wsGate == nil {
		return errors.New("broker: not started")
	}
	now := time.Now()
	errs := []error{s.mqttGate.check(now), s.wsGate.check(now)}
	if s.mqttsGate != nil {
		errs = append(errs, s.mqttsGate.check(now))
	}
	return errors.Join(errs...)
}

// wsTLS and httpTLS report whether the WebSocket and HTTP listeners serve
// TLS.
func (s *Server) wsTLS() bool   { return s.tls != nil && s.cfg.TLS.WS }
func (s *Server) httpTLS() bool { return s.tls != nil && s.cfg.TLS.HTTP }

// degraded names what this node does without while it keeps serving: the
// cluster bus (live delivery to and from other nodes waits; devices catch up
// when it is back). A node without its bus still stores and acknowledges
// every message and serves its own devices, so the load balancer keeps
// sending it clients (/readyz answers 200 and says so).
func (s *Server) degraded(context.Context) []string {
	if s.bus != nil && s.bus.Check() != nil {
		return []string{"bus"}
	}
	return nil
}

// Registry returns the node's metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

func listen(name, addr, setting string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener on %s: %w (move it with the %s setting)", name, addr, err, setting)
	}
	return ln, nil
}

// Start binds the listeners and starts serving. A taken port is reported
// with the listener's name and the setting that moves it.
func (s *Server) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("broker: already started")
	}
	var err error
	closeAll := func() {
		for _, ln := range []net.Listener{s.mqttLn, s.mqttsLn, s.wsLn, s.httpLn, s.metricsLn, s.adminLn} {
			if ln != nil {
				ln.Close()
			}
		}
	}
	if s.mqttLn, err = listen("MQTT", s.cfg.MQTTAddr, "mqtt.addr (PARLEY_MQTT_ADDR, -mqtt.addr)"); err != nil {
		return err
	}
	if s.tls != nil {
		if s.mqttsLn, err = listen("MQTT over TLS", s.cfg.TLS.MQTTAddr, "mqtt.tls_addr (PARLEY_MQTT_TLS_ADDR, -mqtt.tls_addr)"); err != nil {
			closeAll()
			return err
		}
	}
	wsName, httpName := "MQTT-over-WebSocket", "HTTP"
	if s.wsTLS() {
		wsName = "MQTT-over-WebSocket (TLS)"
	}
	if s.httpTLS() {
		httpName = "HTTPS"
	}
	if s.wsLn, err = listen(wsName, s.cfg.WSAddr, "ws.addr (PARLEY_WS_ADDR, -ws.addr)"); err != nil {
		closeAll()
		return err
	}
	if s.httpLn, err = listen(httpName, s.cfg.HTTPAddr, "http.addr (PARLEY_HTTP_ADDR, -http.addr)"); err != nil {
		closeAll()
		return err
	}
	if s.metricsHTTP != nil {
		if s.metricsLn, err = listen("metrics", s.cfg.MetricsAddr, "http.metrics_addr (PARLEY_HTTP_METRICS_ADDR, -http.metrics_addr)"); err != nil {
			closeAll()
			return err
		}
	}
	if s.adminHTTP != nil {
		if s.adminLn, err = listen("administrators' HTTP", s.cfg.AdminAddr, "http.admin_addr (PARLEY_HTTP_ADMIN_ADDR, -http.admin_addr)"); err != nil {
			closeAll()
			return err
		}
	}
	allow := func(r *http.Request) bool { return originAllowed(s.cfg.AllowedOrigins, r) }
	mlog := s.log.With("component", "mqtt")
	s.mqttGate = newGatedListener("mqtt", s.mqttLn, s.cfg.MaxConnections, s.ips, s.connMetrics, mlog)
	s.wsGate = newGatedListener("ws", s.wsLn, s.cfg.MaxConnections, s.ips, s.connMetrics, mlog)
	if err := s.mqtt.AddListener(&streamListener{id: "mqtt", proto: "tcp", ln: s.mqttGate, log: mlog,
		writeTimeout: s.cfg.WriteTimeout, connectTimeout: s.cfg.ConnectTimeout, closeOwn: s.disconnectListener}); err != nil {
		closeAll()
		return fmt.Errorf("broker: %w", err)
	}
	if s.mqttsLn != nil {
		s.mqttsGate = newGatedListener("mqtts", s.mqttsLn, s.cfg.MaxConnections, s.ips, s.connMetrics, mlog)
		if err := s.mqtt.AddListener(&streamListener{id: "mqtts", proto: "tcp", ln: s.mqttsGate, log: mlog, tls: s.tls.config(),
			writeTimeout: s.cfg.WriteTimeout, connectTimeout: s.cfg.ConnectTimeout, closeOwn: s.disconnectListener}); err != nil {
			closeAll()
			return fmt.Errorf("broker: %w", err)
		}
	}
	// The WebSocket upgrade is part of connecting: its headers get no more
	// than ConnectTimeout either.
	wsHTTP := s.cfg.newHTTPServer(nil)
	wsHTTP.ReadHeaderTimeout = min(s.cfg.HTTPReadHeaderTimeout, s.cfg.ConnectTimeout)
	wsl := newWebSocketListener("ws", s.wsGate, wsHTTP, s.cfg.WSPath, allow, mlog)
	wsl.writeTimeout, wsl.connectTimeout, wsl.closeOwn = s.cfg.WriteTimeout, s.cfg.ConnectTimeout, s.disconnectListener
	if s.wsTLS() {
		// HTTP/1.1 only: the WebSocket upgrade is not spoken over h2 here.
		wsl.tls = s.tls.config("http/1.1")
		wsHTTP.ErrorLog = httpErrorLog(mlog, "ws")
	}
	if err := s.mqtt.AddListener(wsl); err != nil {
		closeAll()
		return fmt.Errorf("broker: %w", err)
	}
	if s.bus != nil {
		s.bus.Start(s.inbox)
	}
	if err := s.mqtt.Serve(); err != nil {
		closeAll()
		return fmt.Errorf("broker: %w", err)
	}
	s.inbox.Start()
	s.maint.Start()
	s.sessions.start()
	s.presence.Start()
	if s.push != nil {
		s.push.Start(context.WithoutCancel(ctx))
	}
	go func() {
		defer close(s.httpDone)
		serve := s.http.Serve
		if s.httpTLS() {
			serve = func(ln net.Listener) error { return s.http.ServeTLS(ln, "", "") }
		}
		if err := serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server", "error", err)
		}
	}()
	if s.metricsHTTP != nil {
		go func() {
			defer close(s.metricsDone)
			if err := s.metricsHTTP.Serve(s.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("metrics http server", "error", err)
			}
		}()
	} else {
		close(s.metricsDone)
	}
	s.serveAdmin()
	ws, web := "ws://", "http://"
	if s.wsTLS() {
		ws = "wss://"
	}
	if s.httpTLS() {
		web = "https://"
	}
	attrs := []any{"mqtt", s.MQTTAddr(), "ws", ws + s.WSAddr() + s.cfg.WSPath, "http", web + s.HTTPAddr()}
	if s.metricsLn != nil {
		attrs = append(attrs, "metrics", "http://"+s.MetricsAddr())
	}
	if s.mqttsLn != nil {
		attrs = append(attrs, "mqtts", s.MQTTTLSAddr())
	}
	if s.adminLn != nil {
		attrs = append(attrs, "admin", web+s.AdminAddr())
	}
	s.log.Info("parley listening", attrs...)
	return nil
}

// MQTTAddr returns the bound MQTT address.
func (s *Server) MQTTAddr() string { return s.mqttLn.Addr().String() }

// MQTTTLSAddr returns the bound MQTT-over-TLS address, or "" without TLS.
func (s *Server) MQTTTLSAddr() string {
	if s.mqttsLn == nil {
		return ""
	}
	return s.mqttsLn.Addr().String()
}

// WSAddr returns the bound WebSocket address.
func (s *Server) WSAddr() string { return s.wsLn.Addr().String() }

// HTTPAddr returns the bound HTTP address.
func (s *Server) HTTPAddr() string { return s.httpLn.Addr().String() }

// MetricsAddr returns the bound address of /metrics when it is separate
// (Config.MetricsAddr), or "".
func (s *Server) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

// Close drains the node: the HTTP API stops taking requests, the MQTT
// listeners close, connected clients are disconnected once the publishes they
// are storing have committed, and cursors are flushed. The store is the
// caller's to close afterwards. Safe to call twice.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if !s.started.Load() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil {
			s.log.Warn("http shutdown", "error", err)
		}
		<-s.httpDone
		if s.metricsHTTP != nil {
			if err := s.metricsHTTP.Shutdown(ctx); err != nil {
				s.log.Warn("metrics http shutdown", "error", err)
			}
		}
		<-s.metricsDone
		s.closeAdmin(ctx)
		s.mqtt.Close()
		if s.bus != nil {
			s.bus.Close()
		}
		s.maint.Close()
		s.sessions.close()
		s.inbox.Close()
		s.presence.Close()
		if s.push != nil {
			s.push.Close()
		}
	})
	return nil
}

// disconnectListener disconnects the clients of one listener, as mochi's
// closeListenerClients does, but reads the client map with GetAll (one read
// lock) instead of GetByListener (two, which deadlock against a concurrent
// disconnect in mochi v2.7.9).
func (s *Server) disconnectListener(listener string) {
	for _, cl := range s.mqtt.Clients.GetAll() {
		if cl.Net.Listener == listener && !cl.Closed() {
			_ = s.mqtt.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}
