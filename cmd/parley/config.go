package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/broker"
	"github.com/parleychat/parley/groups"
	"github.com/parleychat/parley/hooks"
)

// config is every setting of the parley command. Each field's key is its
// name in the YAML file (nested by dots), its environment variable is
// PARLEY_ + the key in capitals with _ for . (PARLEY_MQTT_ADDR), and its flag
// is -key. Precedence: flag, environment, file, default. configs/parley.yaml
// documents each one.
type config struct {
	MQTTAddr       string        `key:"mqtt.addr" default:":1883" help:"MQTT (TCP) listener address"`
	MQTTTLSAddr    string        `key:"mqtt.tls_addr" default:":8883" help:"MQTT over TLS (mqtts) listener address; listened only when tls.cert_file is set"`
	ConnectTimeout time.Duration `key:"mqtt.connect_timeout" default:"10s" help:"a connection (TCP or WebSocket) that has not sent CONNECT within this is closed"`
	MaxSessionExp  time.Duration `key:"mqtt.max_session_expiry" default:"168h" help:"longest a disconnected persistent session is kept (announced in MQTT 5 CONNACK; also caps DISCONNECT)"`
	MaxKeepalive   time.Duration `key:"mqtt.max_keepalive" default:"300s" help:"keep-alive given to clients asking for 0 or more (MQTT 5: Server Keep Alive; 3.1.1: closed after 1.5x of silence)"`
	WSAddr         string        `key:"ws.addr" default:":8083" help:"MQTT-over-WebSocket listener address"`
	WSPath         string        `key:"ws.path" default:"/mqtt" help:"WebSocket endpoint path"`
	AllowedOrigins []string      `key:"ws.allowed_origins" default:"" help:"browser origins (scheme://host:port) allowed to open WebSockets, comma separated; empty: pages of the host name the WebSocket is opened on (the web app's own); * allows any"`
	WSTLS          bool          `key:"ws.tls" default:"true" help:"with tls.cert_file set: serve wss (TLS) on ws.addr instead of plain ws"`
	WSPublicURL    string        `key:"ws.public_url" default:"" help:"ws:// or wss:// URL the web app dials for MQTT over WebSocket (behind a proxy); empty: the page's host name, ws.addr's port, ws.path"`
	HTTPAddr       string        `key:"http.addr" default:":8080" help:"HTTP API address"`
	HTTPTLS        bool          `key:"http.tls" default:"true" help:"with tls.cert_file set: serve HTTPS on http.addr instead of plain HTTP"`
	MetricsAddr    string        `key:"http.metrics_addr" default:"" help:"address serving /metrics (and /debug/pprof/) instead of http.addr; empty serves them on http.addr"`
	AdminAddr      string        `key:"http.admin_addr" default:"" help:"private address serving administrators' HTTP (/v1/admin/..., /v1/cluster, their Basic auth), refused (404) on http.addr; empty serves them on http.addr"`
	HTTPRead       time.Duration `key:"http.read_timeout" default:"30s" help:"time to read a whole HTTP request, body included"`
	HTTPReadHeader time.Duration `key:"http.read_header_timeout" default:"10s" help:"time to read an HTTP request's headers"`
	HTTPIdle       time.Duration `key:"http.idle_timeout" default:"120s" help:"an idle HTTP keep-alive connection is closed after this"`
	HTTPMaxHeader  int           `key:"http.max_header_bytes" default:"65536" help:"largest HTTP request headers in bytes"`
	WebDebug       bool          `key:"web.debug" default:"false" help:"give the web app's page scripts a handle on its client (window.parley), for browser tests and debugging; off in production"`
	DatabaseURL    string        `key:"database.url" default:"" help:"postgres:// URL of the Postgres store; empty uses the embedded store at database.path"`
	DatabasePath   string        `key:"database.path" default:"./data/parley.db" help:"file of the embedded store"`
	DatabaseCreate bool          `key:"database.create" default:"true" help:"create the Postgres database if it does not exist"`
	Writers        int           `key:"database.writers" default:"4" help:"group-commit writers (inbox shards)"`
	MaxBatch       int           `key:"database.max_batch" default:"512" help:"most messages committed in one transaction"`
	TLSCert        string        `key:"tls.cert_file" default:"" help:"TLS certificate chain (PEM), reloaded when it changes; empty: no TLS"`
	TLSKey         string        `key:"tls.key_file" default:"" help:"private key of tls.cert_file (PEM)"`
	TLSClientCA    string        `key:"tls.client_ca_file" default:"" help:"CA certificates (PEM) of administrators' client certificates: when set, an administrator also needs one whose Common Name is their name"`
	Admins         string        `key:"admins" default:"" help:"administrators as name:secret,name:secret; secret a bcrypt ($2a$, $2b$, $2y$) or argon2id ($argon2id$) hash, or (development) the password itself"`
	OpenReg        bool          `key:"auth.open_registration" default:"true" help:"anyone may create an account"`
	TokenTTL       time.Duration `key:"auth.token_ttl" default:"720h" help:"an access token unused for this long expires; each use extends it, up to auth.token_max"`
	TokenMax       time.Duration `key:"auth.token_max" default:"2160h" help:"the longest an access token lives, however much it is used (at least auth.token_ttl)"`
	SessionCheck   time.Duration `key:"auth.session_check" default:"1m" help:"how often each node checks that its MQTT connections' tokens are still valid and ends the others (revocations it did not hear of, expiry)"`
	BcryptCost     int           `key:"auth.bcrypt_cost" default:"10" help:"password hashing cost (4-31)"`
	ThrUser        int           `key:"auth.throttle.user_failures" default:"5" help:"failed password checks (logins, administrators') a user name may collect before its checks are refused for auth.throttle.backoff, doubling with each further failure (-1: not per user)"`
	ThrAddr        int           `key:"auth.throttle.addr_failures" default:"20" help:"the same per client address (IPv6: per /64), whatever the names (-1: not per address)"`
	ThrBackoff     time.Duration `key:"auth.throttle.backoff" default:"1s" help:"first lockout of a user name or address; it doubles with each further failure"`
	ThrMaxBackoff  time.Duration `key:"auth.throttle.max_backoff" default:"15m" help:"longest lockout"`
	ThrForget      time.Duration `key:"auth.throttle.forget_after" default:"1h" help:"a user name or address without failures for this long starts afresh (at least auth.throttle.max_backoff)"`
	MaxPayload     int           `key:"limits.max_payload" default:"65536" help:"largest message payload in bytes"`
	Rate           float64       `key:"limits.rate" default:"50" help:"messages per second each connection may publish (negative: no limit)"`
	Burst          int           `key:"limits.burst" default:"100" help:"burst above limits.rate"`
	UserRate       float64       `key:"limits.user_rate" default:"100" help:"messages per second all of a user's connections may publish together (negative: no limit)"`
	UserBurst      int           `key:"limits.user_burst" default:"200" help:"burst above limits.user_rate"`
	RateStrikes    int           `key:"limits.rate_strikes" default:"100" help:"refusals for rate a connection may collect within limits.strike_window; one more disconnects it (MQTT 5: 0x96)"`
	StrikeWindow   time.Duration `key:"limits.strike_window" default:"10s" help:"window of limits.rate_strikes"`
	ErrorEntries   int           `key:"limits.error_entries" default:"10" help:"error entries stored per user per limits.error_window; further refusals are counted in the next one"`
	ErrorWindow    time.Duration `key:"limits.error_window" default:"1m" help:"window of limits.error_entries"`
	MaxTopicLen    int           `key:"limits.max_topic_len" default:"256" help:"longest topic name or filter in bytes (0x90 / SUBACK 0x8F past it)"`
	MaxTopicLevels int           `key:"limits.max_topic_levels" default:"8" help:"most levels of a topic name or filter"`
	MaxFilters     int           `key:"limits.max_subscribe_filters" default:"16" help:"most filters in one SUBSCRIBE; every filter of a larger one is refused (0x97)"`
	MaxClientID    int           `key:"limits.max_client_id" default:"128" help:"longest MQTT client id in bytes (CONNACK 0x85 past it)"`
	MaxConnsUser   int           `key:"limits.max_connections_per_user" default:"16" help:"connections a user may hold at once; more are refused (CONNACK 0x97; -1: no limit)"`
	MaxSessUser    int           `key:"limits.max_sessions_per_user" default:"32" help:"persistent sessions a user may hold; a new one evicts the one disconnected longest (-1: no limit)"`
	RefusalRate    float64       `key:"limits.presence_refusal_rate" default:"10" help:"refused subscriptions to others' presence per second a user may cost the store; beyond it they are refused unchecked (negative: no limit)"`
	RefusalBurst   int           `key:"limits.presence_refusal_burst" default:"50" help:"burst above limits.presence_refusal_rate"`
	WritesPending  int           `key:"limits.writes_pending" default:"256" help:"outbound queue per client; overflowing subscribers are disconnected and catch up"`
	MaxMembers     int           `key:"groups.max_members" default:"1024" help:"the most members a group may have"`
	GroupCreate    float64       `key:"groups.create_rate" default:"30" help:"groups each user may create per hour on each node, once groups.create_burst is spent (negative: no limit)"`
	GroupCreateMax int           `key:"groups.create_burst" default:"10" help:"groups each user may create at once"`
	GroupAdd       float64       `key:"groups.add_rate" default:"2000" help:"members each user may add to groups per hour on each node, those listed when creating a group included, once groups.add_burst is spent (negative: no limit)"`
	GroupAddMax    int           `key:"groups.add_burst" default:"1024" help:"members each user may add at once (a group created with more is refused); at least groups.max_members lets one full group be created at once"`
	WriteTimeout   time.Duration `key:"limits.write_timeout" default:"10s" help:"a client that does not read for this long is disconnected"`
	MaxConns       int           `key:"limits.max_connections" default:"50000" help:"open connections per MQTT or WebSocket listener; more are closed at accept (-1: no limit)"`
	MaxConnsPerIP  int           `key:"limits.max_connections_per_ip" default:"1000" help:"open connections per client address (IPv6: per /64) across MQTT and WebSocket; more are closed at accept (-1: no limit)"`
	ConnRatePerIP  float64       `key:"limits.connect_rate_per_ip" default:"50" help:"new connections per second per client address; more are closed at accept (-1: no limit)"`
	ConnBurstPerIP int           `key:"limits.connect_burst_per_ip" default:"200" help:"burst above limits.connect_rate_per_ip"`
	PushAPNsKey    string        `key:"push.apns.key_file" default:"" help:"APNs .p8 signing key; empty leaves APNs off"`
	PushAPNsKeyID  string        `key:"push.apns.key_id" default:"" help:"APNs key id (10 characters)"`
	PushAPNsTeam   string        `key:"push.apns.team_id" default:"" help:"Apple developer team id"`
	PushAPNsTopic  string        `key:"push.apns.topic" default:"" help:"the iOS app's bundle id"`
	PushFCMCreds   string        `key:"push.fcm.credentials_file" default:"" help:"FCM service-account JSON key; empty leaves FCM off"`
	PushFCMProject string        `key:"push.fcm.project_id" default:"" help:"Firebase project id (default: the credentials' project)"`
	PushLog        bool          `key:"push.log" default:"false" help:"development: log notifications instead of sending them (every platform not configured above)"`
	PushGrace      time.Duration `key:"push.grace" default:"3s" help:"wait before pushing, so that users who reconnect get no push"`
	PushMaxDevices int           `key:"push.max_devices" default:"10" help:"push tokens one user may register; one more deletes the user's least recently updated"`
	MaintInterval  time.Duration `key:"maintenance.interval" default:"1h" help:"how often expired tokens, old idempotency keys and abandoned cursors are pruned (negative: never)"`
	MaintDedupAge  time.Duration `key:"maintenance.dedup_age" default:"720h" help:"how long a message's cid is remembered: a retry older than that is stored again"`
	MaintCursorAge time.Duration `key:"maintenance.cursor_age" default:"2160h" help:"cursors of a device that acknowledged nothing for this long are deleted (above mqtt.max_session_expiry)"`
	MaintAckAge    time.Duration `key:"maintenance.push_ack_age" default:"24h" help:"acknowledgements recorded for push suppression that outlived their push jobs are deleted after this"`
	MaintDelivAge  time.Duration `key:"maintenance.delivery_age" default:"72h" help:"records of who has which message (delivered receipts once across nodes) are deleted after this"`
	NATSURL        string        `key:"cluster.nats_url" default:"" help:"NATS servers of the cluster, comma separated (nats://host:4222); empty runs a single node"`
	Node           string        `key:"cluster.node" default:"" help:"this node's name in the cluster (default: the hostname)"`
	Heartbeat      time.Duration `key:"cluster.heartbeat" default:"1s" help:"how often a node tells the others it is alive"`
	NodeTimeout    time.Duration `key:"cluster.node_timeout" default:"10s" help:"a node unheard for this long is dead: its users' devices show offline"`
	Pprof          bool          `key:"debug.pprof" default:"false" help:"serve Go profiles at /debug/pprof/ on http.metrics_addr (http.addr when empty), for measuring (keep it private)"`
	LogLevel       string        `key:"log.level" default:"info" help:"debug, info, warn or error"`
	LogFormat      string        `key:"log.format" default:"text" help:"text or json"`
}

type setting struct {
	key, env, def, help string
	field               reflect.Value
}

func (c *config) settings() []setting {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	out := make([]setting, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := f.Tag.Get("key")
		out = append(out, setting{key: key, env: envName(key), def: f.Tag.Get("default"), help: f.Tag.Get("help"), field: v.Field(i)})
	}
	return out
}

func envName(key string) string {
	return "PARLEY_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func set(s setting, raw string) error {
	f := s.field
	switch f.Kind() {
	case reflect.String:
		f.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", s.key, raw)
		}
		f.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("%s: %q is not a whole number", s.key, raw)
		}
		f.SetInt(int64(n))
	case reflect.Int64: // time.Duration
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration (like 30s, 720h)", s.key, raw)
		}
		f.SetInt(int64(d))
	case reflect.Float64:
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", s.key, raw)
		}
		f.SetFloat(x)
	case reflect.Slice:
		var items []string
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				items = append(items, p)
			}
		}
		f.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("%s: unsupported type", s.key)
	}
	return nil
}

// loadConfig builds the configuration from defaults, the YAML file (if it
// exists; a file named explicitly must exist), the environment and flags.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (cfg config, path string, check bool, err error) {
	ss := cfg.settings()
	for _, s := range ss {
		if err := set(s, s.def); err != nil {
			return cfg, "", false, err
		}
	}
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&path, "config", "", "YAML configuration file (default configs/parley.yaml if present)")
	fs.BoolVar(&check, "check-config", false, "validate the configuration, print it and exit")
	flagVals := map[string]*string{}
	for _, s := range ss {
		flagVals[s.key] = fs.String(s.key, "", fmt.Sprintf("%s (env %s, default %q)", s.help, s.env, s.def))
	}
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: parley [flags]\n\nEvery setting can also be given in the YAML file or as an environment variable.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, "", false, err
	}
	if fs.NArg() > 0 {
		return cfg, "", false, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	explicit := path != ""
	if !explicit {
		path = "configs/parley.yaml"
	}
	if b, rerr := os.ReadFile(path); rerr == nil {
		if err := applyYAML(ss, b); err != nil {
			return cfg, path, check, fmt.Errorf("%s: %w", path, err)
		}
	} else if explicit || !errors.Is(rerr, os.ErrNotExist) {
		return cfg, path, check, fmt.Errorf("config: %w", rerr)
	} else {
		path = ""
	}
	for _, s := range ss {
		if v := getenv(s.env); v != "" {
			if err := set(s, v); err != nil {
				return cfg, path, check, fmt.Errorf("%s: %w", s.env, err)
			}
		}
	}
	var ferr error
	fs.Visit(func(f *flag.Flag) {
		for _, s := range ss {
			if s.key == f.Name && ferr == nil {
				ferr = set(s, *flagVals[s.key])
			}
		}
	})
	if ferr != nil {
		return cfg, path, check, fmt.Errorf("flag -%w", ferr)
	}
	return cfg, path, check, cfg.validate()
}

// applyYAML sets every key of a YAML document; unknown keys are errors, so
// that a misspelt setting does not pass silently.
func applyYAML(ss []setting, b []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return err
	}
	if len(root.Content) == 0 {
		return nil
	}
	flat := map[string]string{}
	var walk func(prefix string, n *yaml.Node) error
	walk = func(prefix string, n *yaml.Node) error {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if prefix != "" {
					k = prefix + "." + k
				}
				if err := walk(k, n.Content[i+1]); err != nil {
					return err
				}
			}
		case yaml.SequenceNode:
			var items []string
			for _, c := range n.Content {
				items = append(items, c.Value)
			}
			flat[prefix] = strings.Join(items, ",")
		case yaml.ScalarNode:
			if n.Tag != "!!null" {
				flat[prefix] = n.Value
			}
		default:
			return fmt.Errorf("line %d: unsupported value for %s", n.Line, prefix)
		}
		return nil
	}
	if err := walk("", root.Content[0]); err != nil {
		return err
	}
	known := map[string]setting{}
	for _, s := range ss {
		known[s.key] = s
	}
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s, ok := known[k]
		if !ok {
			return fmt.Errorf("unknown setting %q", k)
		}
		if err := set(s, flat[k]); err != nil {
			return err
		}
	}
	return nil
}

func (c *config) validate() error {
	var errs []error
	if c.MaintDedupAge < time.Hour {
		errs = append(errs, fmt.Errorf("maintenance.dedup_age must be at least 1h"))
	}
	if c.MaintCursorAge <= c.MaxSessionExp {
		errs = append(errs, fmt.Errorf("maintenance.cursor_age (%v) must be longer than mqtt.max_session_expiry (%v)", c.MaintCursorAge, c.MaxSessionExp))
	}
	if c.MaxPayload < 256 || c.MaxPayload > 16<<20 {
		errs = append(errs, fmt.Errorf("limits.max_payload must be 256 to 16777216 bytes"))
	}
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		errs = append(errs, fmt.Errorf("database.url must be a postgres:// URL (or empty for the embedded store)"))
	}
	if c.MaxMembers < 2 || c.MaxMembers > 100000 {
		errs = append(errs, fmt.Errorf("groups.max_members must be 2 to 100000"))
	}
	errs = append(errs, c.validateGroupLimits()...)
	if c.Writers < 1 || c.Writers > 64 {
		errs = append(errs, fmt.Errorf("database.writers must be 1 to 64"))
	}
	if c.MaxBatch < 1 || c.MaxBatch > 10000 {
		errs = append(errs, fmt.Errorf("database.max_batch must be 1 to 10000"))
	}
	if c.ConnectTimeout <= 0 || c.ConnectTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("mqtt.connect_timeout must be more than 0 and at most 5m"))
	}
	if c.MaxKeepalive < time.Second || c.MaxKeepalive > 65535*time.Second || c.MaxKeepalive%time.Second != 0 {
		errs = append(errs, fmt.Errorf("mqtt.max_keepalive must be whole seconds from 1s to 65535s"))
	}
	for _, l := range []struct {
		key string
		v   int
	}{{"limits.max_connections", c.MaxConns}, {"limits.max_connections_per_ip", c.MaxConnsPerIP}} {
		if l.v == 0 || l.v < -1 {
			errs = append(errs, fmt.Errorf("%s must be 1 or more, or -1 for no limit", l.key))
		}
	}
	if c.ConnRatePerIP == 0 || (c.ConnRatePerIP < 0 && c.ConnRatePerIP != -1) {
		errs = append(errs, fmt.Errorf("limits.connect_rate_per_ip must be more than 0, or -1 for no limit"))
	}
	if c.ConnBurstPerIP < 1 {
		errs = append(errs, fmt.Errorf("limits.connect_burst_per_ip must be 1 or more"))
	}
	for _, l := range []struct {
		key string
		d   time.Duration
	}{{"http.read_timeout", c.HTTPRead}, {"http.read_header_timeout", c.HTTPReadHeader}, {"http.idle_timeout", c.HTTPIdle}} {
		if l.d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be more than 0", l.key))
		}
	}
	if c.HTTPMaxHeader < 1024 || c.HTTPMaxHeader > 16<<20 {
		errs = append(errs, fmt.Errorf("http.max_header_bytes must be 1024 to 16777216"))
	}
	errs = append(errs, c.validateClientLimits()...)
	if c.PushGrace <= 0 || c.PushGrace > time.Hour {
		errs = append(errs, fmt.Errorf("push.grace must be more than 0 and at most 1h"))
	}
	if c.PushMaxDevices < 1 || c.PushMaxDevices > 1000 {
		errs = append(errs, fmt.Errorf("push.max_devices must be 1 to 1000"))
	}
	if _, err := c.admins(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateThrottle()...)
	errs = append(errs, c.validateTLS()...)
	errs = append(errs, c.validateSessions()...)
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level must be debug, info, warn or error"))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format must be text or json"))
	}
	return errors.Join(errs...)
}

// validateTLS checks the TLS settings and ws.public_url: the files are
// named together and exist (broker.New reads them), and the web app can
// reach MQTT over WebSocket from a page served over HTTPS.
func (c *config) validateTLS() []error {
	var errs []error
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls.cert_file and tls.key_file go together: set both or neither"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("tls.client_ca_file needs tls.cert_file and tls.key_file (client certificates come over TLS)"))
	}
	for _, f := range []struct{ key, file string }{{"tls.cert_file", c.TLSCert}, {"tls.key_file", c.TLSKey}, {"tls.client_ca_file", c.TLSClientCA}} {
		if f.file == "" {
			continue
		}
		if _, err := os.Stat(f.file); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
		}
	}
	httpsPage := c.TLSCert != "" && c.HTTPTLS
	if c.WSPublicURL != "" {
		u, err := url.Parse(c.WSPublicURL)
		switch {
		case err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "":
			errs = append(errs, fmt.Errorf("ws.public_url must be a ws:// or wss:// URL, like wss://chat.example.com/mqtt"))
		case u.Scheme == "ws" && httpsPage:
			errs = append(errs, fmt.Errorf("ws.public_url is ws:// but the web app is served over HTTPS (http.tls): browsers refuse plain ws from an HTTPS page; use wss://"))
		}
	} else if httpsPage && !c.WSTLS {
		errs = append(errs, fmt.Errorf("the web app is served over HTTPS (http.tls) but ws.addr serves plain ws (ws.tls false), which browsers refuse from an HTTPS page: set ws.tls, or ws.public_url to a wss:// URL"))
	}
	return errs
}

// tls returns the broker's TLS settings.
func (c *config) tls() broker.TLSConfig {
	return broker.TLSConfig{CertFile: c.TLSCert, KeyFile: c.TLSKey, ClientCAFile: c.TLSClientCA,
		MQTTAddr: c.MQTTTLSAddr, WS: c.WSTLS, HTTP: c.HTTPTLS}
}

// validateClientLimits checks the limits on what one client or one user
// may cost (hooks.AuthConfig, InboxConfig, PresenceConfig).
func (c *config) validateClientLimits() []error {
	var errs []error
	atLeast := func(key string, v, min int) {
		if v < min {
			errs = append(errs, fmt.Errorf("%s must be %d or more", key, min))
		}
	}
	atLeast("limits.user_burst", c.UserBurst, 1)
	atLeast("limits.rate_strikes", c.RateStrikes, 1)
	atLeast("limits.error_entries", c.ErrorEntries, 1)
	atLeast("limits.max_topic_len", c.MaxTopicLen, 64) // u/{64-byte id} must fit
	atLeast("limits.max_topic_levels", c.MaxTopicLevels, 2)
	atLeast("limits.max_subscribe_filters", c.MaxFilters, 1)
	atLeast("limits.presence_refusal_burst", c.RefusalBurst, 1)
	if c.MaxClientID < 66 || c.MaxClientID > 2048 { // {64-byte user id}/x must fit; the cursor index must hold it
		errs = append(errs, fmt.Errorf("limits.max_client_id must be 66 to 2048 bytes"))
	}
	for _, l := range []struct {
		key string
		v   int
	}{{"limits.max_connections_per_user", c.MaxConnsUser}, {"limits.max_sessions_per_user", c.MaxSessUser}} {
		if l.v == 0 || l.v < -1 {
			errs = append(errs, fmt.Errorf("%s must be 1 or more, or -1 for no limit", l.key))
		}
	}
	if c.UserRate == 0 {
		errs = append(errs, fmt.Errorf("limits.user_rate must be more than 0, or negative for no limit"))
	}
	if c.RefusalRate == 0 {
		errs = append(errs, fmt.Errorf("limits.presence_refusal_rate must be more than 0, or negative for no limit"))
	}
	for _, l := range []struct {
		key string
		d   time.Duration
	}{{"limits.strike_window", c.StrikeWindow}, {"limits.error_window", c.ErrorWindow}} {
		if l.d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be more than 0", l.key))
		}
	}
	if c.MaxSessionExp < time.Second || c.MaxSessionExp > math.MaxUint32*time.Second {
		errs = append(errs, fmt.Errorf("mqtt.max_session_expiry must be 1s to 136 years"))
	}
	return errs
}

// clientLimits returns the hooks' configuration of the limits on what one
// client or one user may cost, for broker.Config's Auth, Inbox and Presence.
func (c *config) clientLimits() (hooks.AuthConfig, hooks.InboxConfig, hooks.PresenceConfig) {
	return hooks.AuthConfig{MaxClientID: c.MaxClientID, MaxConnectionsPerUser: c.MaxConnsUser},
		hooks.InboxConfig{Rate: c.Rate, Burst: c.Burst, UserRate: c.UserRate, UserBurst: c.UserBurst,
			RateStrikes: c.RateStrikes, StrikeWindow: c.StrikeWindow, ErrorEntries: c.ErrorEntries, ErrorWindow: c.ErrorWindow,
			MaxTopicLen: c.MaxTopicLen, MaxTopicLevels: c.MaxTopicLevels, MaxFilters: c.MaxFilters,
			MaxSessionsPerUser: c.MaxSessUser, MaxSessionExpiry: c.MaxSessionExp},
		hooks.PresenceConfig{RefusalRate: c.RefusalRate, RefusalBurst: c.RefusalBurst}
}

// validateGroupLimits checks the limits on groups created and members
// added per user (groups.Limits).
func (c *config) validateGroupLimits() []error {
	var errs []error
	for _, r := range []struct {
		key string
		v   float64
	}{{"groups.create_rate", c.GroupCreate}, {"groups.add_rate", c.GroupAdd}} {
		if r.v == 0 {
			errs = append(errs, fmt.Errorf("%s must be more than 0 (per hour), or negative for no limit", r.key))
		}
	}
	for _, b := range []struct {
		key string
		v   int
	}{{"groups.create_burst", c.GroupCreateMax}, {"groups.add_burst", c.GroupAddMax}} {
		if b.v < 1 {
			errs = append(errs, fmt.Errorf("%s must be 1 or more", b.key))
		}
	}
	return errs
}

// groupLimits returns the limits on groups created and members added per
// user, for broker.Config.GroupLimits.
func (c *config) groupLimits() groups.Limits {
	return groups.Limits{CreateRate: c.GroupCreate, CreateBurst: c.GroupCreateMax, AddRate: c.GroupAdd, AddBurst: c.GroupAddMax}
}

// admins returns the administrators and their secrets (auth.Config.Admins).
// An argon2id hash holds commas ("m=65536,t=3,p=4"): a piece with no ":"
// continues the one before.
func (c *config) admins() (map[string]string, error) {
	var pairs []string
	for _, p := range strings.Split(c.Admins, ",") {
		if len(pairs) > 0 && !strings.Contains(p, ":") {
			pairs[len(pairs)-1] += "," + p
			continue
		}
		pairs = append(pairs, p)
	}
	out := map[string]string{}
	for _, pair := range pairs {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		name, pw, ok := strings.Cut(pair, ":")
		if !ok || name == "" || pw == "" {
			return nil, fmt.Errorf("admins: %q must be name:password or name:hash", pair)
		}
		if err := auth.CheckAdminPassword(pw); err != nil {
			return nil, fmt.Errorf("admins: %s: %w", name, err)
		}
		out[name] = pw
	}
	return out, nil
}

// validateThrottle checks the auth.throttle settings.
func (c *config) validateThrottle() []error {
	var errs []error
	for _, l := range []struct {
		key string
		v   int
	}{{"auth.throttle.user_failures", c.ThrUser}, {"auth.throttle.addr_failures", c.ThrAddr}} {
		if l.v == 0 || l.v < -1 {
			errs = append(errs, fmt.Errorf("%s must be 1 or more, or -1 for no throttling", l.key))
		}
	}
	if c.ThrBackoff <= 0 {
		errs = append(errs, errors.New("auth.throttle.backoff must be more than 0"))
	}
	if c.ThrMaxBackoff < c.ThrBackoff {
		errs = append(errs, errors.New("auth.throttle.max_backoff must be at least auth.throttle.backoff"))
	}
	if c.ThrForget < c.ThrMaxBackoff {
		errs = append(errs, errors.New("auth.throttle.forget_after must be at least auth.throttle.max_backoff"))
	}
	return errs
}

// throttle returns the throttle of password checks.
func (c *config) throttle() auth.ThrottleConfig {
	return auth.ThrottleConfig{UserFailures: c.ThrUser, AddrFailures: c.ThrAddr, Backoff: c.ThrBackoff,
		MaxBackoff: c.ThrMaxBackoff, ForgetAfter: c.ThrForget}
}

// print writes the effective settings, hiding secrets.
func (c *config) print(w io.Writer) {
	for _, s := range c.settings() {
		v := fmt.Sprint(s.field.Interface())
		if s.key == "admins" && v != "" {
			admins, _ := c.admins()
			var names []string
			for n := range admins {
				names = append(names, n+":***")
			}
			sort.Strings(names)
			v = strings.Join(names, ",")
		}
		if s.key == "database.url" {
			v = redactURL(v)
		}
		fmt.Fprintf(w, "%-24s %s\n", s.key, v)
	}
}

func redactURL(u string) string {
	at := strings.Index(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 {
		return u
	}
	userinfo := u[scheme+3 : at]
	if name, _, ok := strings.Cut(userinfo, ":"); ok {
		return u[:scheme+3] + name + ":***" + u[at:]
	}
	return u
}

// cluster returns the node's cluster settings: with cluster.nats_url set,
// the node is named cluster.node, or after its host.
func (c *config) cluster() (broker.ClusterConfig, error) {
	cc := broker.ClusterConfig{NATSURL: strings.TrimSpace(c.NATSURL), Node: c.Node, Heartbeat: c.Heartbeat,
		NodeTimeout: c.NodeTimeout}
	if cc.NATSURL == "" {
		return cc, nil
	}
	if c.Heartbeat <= 0 || c.NodeTimeout < 3*c.Heartbeat {
		return cc, errors.New("cluster.node_timeout must be at least 3 times cluster.heartbeat, which must be positive")
	}
	if c.DatabaseURL == "" {
		return cc, errors.New("cluster.nats_url: the nodes of a cluster share one Postgres: set database.url (the embedded store is for a single node)")
	}
	if cc.Node == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return cc, fmt.Errorf("cluster.node: not set, and the hostname is unknown (%v): name the node", err)
		}
		cc.Node = host
	}
	return cc, nil
}
