package loadtest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parleychat/parley/loadtest/schedule"
)

// Workload names.
const (
	WorkloadRaw         = "raw"
	WorkloadConnections = "connections"
	WorkloadDM          = "dm"
	WorkloadGroup       = "group"
)

// Workloads lists the workloads Run knows.
func Workloads() []string {
	return []string{WorkloadRaw, WorkloadConnections, WorkloadDM, WorkloadGroup}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid configuration")

// Config is one load test run. Fields say which workloads use them and give
// their defaults, which Defaults fills in.
type Config struct {
	Workload string // WorkloadRaw, …

	// Brokers and connections (all workloads).
	//
	// Brokers are the MQTT brokers, host:port: one, or the nodes of a
	// cluster, over which the connections are spread: connection, user or
	// raw subscriber i connects to Brokers[i mod N], raw publisher i to
	// Brokers[(i+1) mod N] (default [127.0.0.1:1883]).
	Brokers        []string
	Protocol       int           // 5 (default) or 3 for MQTT 3.1.1
	Username       string        // raw, connections: MQTT username, if the broker wants one
	Password       string        // raw, connections: MQTT password
	KeepAlive      time.Duration // default 30s
	ReceiveMaximum uint16        // MQTT 5 Receive Maximum in CONNECT (default 1024; connections: 32)
	MaxInflight    int           // MQTT 3.1.1 QoS 1 publishes awaiting PUBACK per connection (default 1024)
	ConnRate       float64       // connection attempts per second, reconnects included (default 500)
	ConnectTimeout time.Duration // default 10s
	Sources        []net.IP      // local source addresses to spread connections over (default: system's choice)
	Reconnect      bool          // reconnect lost connections with jittered backoff
	ReconnectMin   time.Duration // default 100ms
	ReconnectMax   time.Duration // default 5s

	// Sending (raw, dm, group).
	Rate       float64       // messages per second in total (default 1000)
	Duration   time.Duration // sending window, ramp included (default 10s)
	Ramp       time.Duration // linear ramp of the send rate from 0 (default 0)
	Drain      time.Duration // after sending, wait at most this long for acks and deliveries (default 5s)
	MaxBacklog int           // per sending connection, due messages waiting to be written (default 100000)
	Size       int           // payload bytes (raw default 64, minimum 28; dm/group default 100)
	QoS        byte          // raw: 0 or 1 (default 1); dm and group always use 1

	// raw.
	Publishers  int    // default 1
	Subscribers int    // default 1
	Topics      int    // publisher i → topic i%Topics, subscriber j ← topic j%Topics (default 1)
	TopicPrefix string // default "parley-lt"

	// connections.
	Conns     int           // connections to open (default 1000)
	Hold      time.Duration // hold them open this long after the ramp (default 10s)
	Settle    time.Duration // wait after the ramp before sampling memory (default 2s)
	Subscribe bool          // each connection subscribes to a topic of its own

	// Memory sampling (any workload; the point of connections).
	PID        int    // broker process id: read /proc/PID/status VmRSS
	MetricsURL string // or a Prometheus endpoint with process_resident_memory_bytes

	// Parley (dm, group; connections when Admin is set).
	// HTTP are Parley's HTTP API roots, one or one per node; users and groups
	// are provisioned through all of them at once, in contiguous parts
	// (default [http://127.0.0.1:8080]).
	HTTP          []string
	Admin         string        // "name:password" of a Parley admin, for bulk provisioning
	Users         int           // dm: users (default 100)
	CrossNode     float64       // dm, several brokers: share of DMs sent to a user on another broker (default 0.9; 1: all)
	UserPrefix    string        // user ids are UserPrefix + index (default "lt-{run id}-")
	UserPassword  string        // password of the created users (default "lt-password-{run id}")
	SessionExpiry time.Duration // dm, group: persistent session expiry (default 5m)
	Groups        int           // group: groups (default 10)
	Members       int           // group: members per group (default 10)
	// Provisioner creates users and groups (default: a parleyapi.Client on
	// HTTP, with Admin's credentials if given).
	Provisioner Provisioner

	// Output.
	Progress         io.Writer     // live progress lines; nil: none
	ProgressInterval time.Duration // default 1s
	// OnPhase, if set, is called as the run enters each phase ("users",
	// "connecting", "sending", "draining", "closing"; connections:
	// "ramping", "settling", "holding"), so that a caller can measure the
	// broker at the right moments. It runs on the run's goroutine: return
	// quickly.
	OnPhase func(phase string)
	Logger  *slog.Logger // default: discard
	RunID   string       // tags topics, client ids and payloads (default: random)
	Clock   schedule.Clock
}

// Defaults returns cfg with every unset field at its default.
func (cfg Config) Defaults() Config {
	setDefault := func(p any, def any) {
		switch p := p.(type) {
		case *string:
			if *p == "" {
				*p = def.(string)
			}
		case *int:
			if *p == 0 {
				*p = def.(int)
			}
		case *float64:
			if *p == 0 {
				*p = def.(float64)
			}
		case *time.Duration:
			if *p == 0 {
				*p = def.(time.Duration)
			}
		}
	}
	if cfg.RunID == "" {
		cfg.RunID = newRunID()
	}
	if len(cfg.Brokers) == 0 {
		cfg.Brokers = []string{"127.0.0.1:1883"}
	}
	setDefault(&cfg.Protocol, 5)
	setDefault(&cfg.KeepAlive, 30*time.Second)
	if cfg.ReceiveMaximum == 0 {
		cfg.ReceiveMaximum = 1024
		if cfg.Workload == WorkloadConnections {
			cfg.ReceiveMaximum = 32 // idle connections: keep the client's inbound queue small
		}
	}
	setDefault(&cfg.MaxInflight, 1024)
	setDefault(&cfg.ConnRate, 500.0)
	setDefault(&cfg.ConnectTimeout, 10*time.Second)
	setDefault(&cfg.ReconnectMin, 100*time.Millisecond)
	setDefault(&cfg.ReconnectMax, 5*time.Second)
	setDefault(&cfg.Rate, 1000.0)
	setDefault(&cfg.Duration, 10*time.Second)
	setDefault(&cfg.Drain, 5*time.Second)
	setDefault(&cfg.MaxBacklog, schedule.DefaultMaxBacklog)
	if cfg.Workload == WorkloadRaw {
		setDefault(&cfg.Size, 64)
	} else {
		setDefault(&cfg.Size, 100)
	}
	setDefault(&cfg.Publishers, 1)
	setDefault(&cfg.Subscribers, 1)
	setDefault(&cfg.Topics, 1)
	setDefault(&cfg.TopicPrefix, "parley-lt")
	setDefault(&cfg.Conns, 1000)
	setDefault(&cfg.Hold, 10*time.Second)
	setDefault(&cfg.Settle, 2*time.Second)
	if len(cfg.HTTP) == 0 {
		cfg.HTTP = []string{"http://127.0.0.1:8080"}
	}
	setDefault(&cfg.Users, 100)
	setDefault(&cfg.CrossNode, 0.9)
	setDefault(&cfg.UserPrefix, "lt-"+cfg.RunID+"-")
	setDefault(&cfg.UserPassword, "lt-password-"+cfg.RunID)
	setDefault(&cfg.SessionExpiry, 5*time.Minute)
	setDefault(&cfg.Groups, 10)
	setDefault(&cfg.Members, 10)
	setDefault(&cfg.ProgressInterval, time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = schedule.RealClock{}
	}
	return cfg
}

// Validate checks a configuration that has its defaults.
func (cfg Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	known := false
	for _, w := range Workloads() {
		known = known || cfg.Workload == w
	}
	if !known {
		bad("unknown workload %q (want %s)", cfg.Workload, strings.Join(Workloads(), ", "))
	}
	if cfg.Protocol != 3 && cfg.Protocol != 5 {
		bad("protocol must be 3 or 5, got %d", cfg.Protocol)
	}
	for _, b := range cfg.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad("broker %q: %v", b, err)
		}
	}
	for _, h := range cfg.HTTP {
		if u, err := url.Parse(h); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("http %q: want a URL such as http://127.0.0.1:8080", h)
		}
	}
	if cfg.ConnRate <= 0 {
		bad("connection rate must be > 0")
	}
	if cfg.KeepAlive < time.Second || cfg.KeepAlive > 65535*time.Second {
		bad("keep-alive must be between 1s and 65535s")
	}
	if cfg.Workload != WorkloadConnections {
		if err := (schedule.Plan{Rate: cfg.Rate, Ramp: cfg.Ramp, Duration: cfg.Duration}).Validate(); err != nil {
			bad("%v", err)
		}
		if cfg.Ramp > cfg.Duration {
			bad("ramp %v is longer than the duration %v", cfg.Ramp, cfg.Duration)
		}
	}
	switch cfg.Workload {
	case WorkloadRaw:
		if cfg.QoS > 1 {
			bad("qos must be 0 or 1")
		}
		if cfg.Size < rawHeaderLen {
			bad("size must be at least %d bytes for the raw workload's header", rawHeaderLen)
		}
		if cfg.Publishers < 1 || cfg.Subscribers < 0 || cfg.Topics < 1 {
			bad("need publishers ≥ 1, subscribers ≥ 0, topics ≥ 1")
		}
	case WorkloadConnections:
		if cfg.Conns < 1 {
			bad("conns must be ≥ 1")
		}
	case WorkloadDM:
		if cfg.Users < 2 {
			bad("dm needs at least 2 users")
		}
		if cfg.CrossNode <= 0 || cfg.CrossNode > 1 {
			bad("cross-node share must be above 0 and at most 1, got %v", cfg.CrossNode)
		}
	case WorkloadGroup:
		if cfg.Groups < 1 || cfg.Members < 2 {
			bad("group needs groups ≥ 1 and members ≥ 2")
		}
	}
	if cfg.Workload == WorkloadDM || cfg.Workload == WorkloadGroup {
		if cfg.Size < minParleySize {
			bad("size must be at least %d bytes for a Parley message with its cid and timestamp", minParleySize)
		}
		if utf8.RuneCountInString(cfg.UserPassword) < 10 { // Parley's rule: auth.MinPasswordChars
			bad("user password must be at least 10 characters")
		}
		if cfg.Admin != "" && !strings.Contains(cfg.Admin, ":") {
			bad("admin must be name:password")
		}
	}
	if cfg.PID != 0 && cfg.MetricsURL != "" {
		bad("give -pid or -metrics, not both")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// describe returns the settings that shape the run, for the report.
func (cfg Config) describe() map[string]string {
	d := map[string]string{
		"run_id":   cfg.RunID,
		"protocol": fmt.Sprint(cfg.Protocol),
	}
	set := func(k string, v any) { d[k] = fmt.Sprint(v) }
	if len(cfg.Sources) > 0 {
		set("sources", len(cfg.Sources))
	}
	if len(cfg.Brokers) > 1 {
		set("brokers", len(cfg.Brokers))
	}
	if cfg.Workload != WorkloadConnections {
		set("rate", cfg.Rate)
		set("duration", cfg.Duration)
		set("size", cfg.Size)
		if cfg.Ramp > 0 {
			set("ramp", cfg.Ramp)
		}
	}
	switch cfg.Workload {
	case WorkloadRaw:
		set("qos", cfg.QoS)
		set("publishers", cfg.Publishers)
		set("subscribers", cfg.Subscribers)
		set("topics", cfg.Topics)
	case WorkloadConnections:
		set("conns", cfg.Conns)
		set("conn_rate", cfg.ConnRate)
		set("hold", cfg.Hold)
		set("keepalive", cfg.KeepAlive)
		if cfg.Subscribe {
			set("subscribe", true)
		}
	case WorkloadDM:
		set("users", cfg.Users)
		if len(cfg.Brokers) > 1 {
			set("cross_node", cfg.CrossNode)
		}
	case WorkloadGroup:
		set("groups", cfg.Groups)
		set("members", cfg.Members)
	}
	return d
}
