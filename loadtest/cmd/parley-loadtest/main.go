// Command parley-loadtest load-tests Parley, or any MQTT broker.
//
//	parley-loadtest raw         -broker 127.0.0.1:1883 -qos 1 -publishers 4 -subscribers 4 -rate 5000 -duration 10s
//	parley-loadtest connections -broker 127.0.0.1:1884 -conns 10000 -conn-rate 1000 -hold 30s -pid 1234
//	parley-loadtest dm          -broker 127.0.0.1:1883 -http http://127.0.0.1:8080 -admin admin:pw -users 200 -rate 500
//	parley-loadtest group       … (needs Parley's group API)
//	parley-loadtest dm          -broker 127.0.0.1:1883,127.0.0.1:1884,127.0.0.1:1885 \
//	                            -http http://127.0.0.1:8080,http://127.0.0.1:8081,http://127.0.0.1:8082 -admin admin:pw
//
// With several brokers (a cluster's nodes) connection i goes to broker i mod
// N, most DMs go to a user on another broker, and publish → delivery is also
// reported for same-node and cross-node deliveries apart.
//
// It prints a progress line every second on stderr and a summary on stdout;
// -json and -plot write the report for machines and as a chart. SIGINT or
// SIGTERM stops sending, drains and prints the summary of what ran; a second
// one exits at once. Exit status: 0 clean, 1 error, 2 usage, 3 messages lost.
// See loadtest/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/parleychat/parley/loadtest"
	"github.com/parleychat/parley/loadtest/mqttclient"
	"github.com/parleychat/parley/loadtest/report"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	exitLoss  = 3
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	workload := args[0]
	opts, err := parseFlags(workload, args[1:], stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var shown errUsageShown
	if errors.As(err, &shown) {
		return exitUsage // the flag package has printed the error and the usage
	}
	if err != nil {
		fmt.Fprintln(stderr, "parley-loadtest:", err)
		return exitUsage
	}
	cfg := opts.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: opts.logLevel}))
	if !opts.quiet {
		cfg.Progress = stderr
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "\nparley-loadtest: %v: stopping, draining and summarizing (again to quit at once)\n", s)
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			fmt.Fprintln(stderr, "parley-loadtest: quitting without a summary")
			os.Exit(130)
		case <-done:
		}
	}()

	rep, err := loadtest.Run(ctx, cfg)
	code := exitOK
	if err != nil {
		fmt.Fprintln(stderr, "parley-loadtest:", err)
		if advice := mqttclient.Advice(err); advice != "" {
			fmt.Fprintln(stderr, "parley-loadtest:", advice)
		}
		code = exitError
	}
	if rep == nil {
		return code
	}
	if err := rep.WriteSummary(stdout); err != nil {
		fmt.Fprintln(stderr, "parley-loadtest:", err)
		code = exitError
	}
	if opts.jsonFile != "" {
		if err := rep.WriteJSONFile(opts.jsonFile); err != nil {
			fmt.Fprintln(stderr, "parley-loadtest:", err)
			code = exitError
		}
	}
	if opts.plotFile != "" {
		if err := rep.WritePlotFile(opts.plotFile, opts.plotW, opts.plotH); err != nil {
			fmt.Fprintln(stderr, "parley-loadtest:", err)
			code = exitError
		}
	}
	if rep.Lost() > 0 && code == exitOK {
		code = exitLoss
	}
	return code
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: parley-loadtest WORKLOAD [flags]

Workloads:
  raw          plain MQTT publishers → subscribers on generic topics (any broker)
  connections  ramp up idle connections, hold them, report broker memory per connection
  dm           Parley users sending direct messages to random peers
  group        Parley group messages (needs Parley's group API, not available yet)

parley-loadtest WORKLOAD -h lists the flags of a workload. See loadtest/README.md.
`)
}

// errUsageShown is a flag error the flag package has already printed.
type errUsageShown struct{ error }

// options are the parsed command line.
type options struct {
	cfg              loadtest.Config
	jsonFile         string
	plotFile         string
	plotW, plotH     int
	quiet            bool
	logLevel         slog.Level
	sources, plotDim string
	brokers, http    string
	qos              uint
	receiveMax       uint
}

func parseFlags(workload string, args []string, stderr io.Writer) (*options, error) {
	known := false
	for _, w := range loadtest.Workloads() {
		known = known || w == workload
	}
	if !known {
		return nil, fmt.Errorf("unknown workload %q (want %s)", workload, strings.Join(loadtest.Workloads(), ", "))
	}
	o := &options{}
	c := &o.cfg
	c.Workload = workload
	fs := flag.NewFlagSet("parley-loadtest "+workload, flag.ContinueOnError)
	fs.SetOutput(stderr)

	// Connections: every workload.
	fs.StringVar(&o.brokers, "broker", "127.0.0.1:1883", "MQTT broker `host:port`, or several, comma-separated (a cluster's nodes): connection i goes to broker i mod N")
	fs.IntVar(&c.Protocol, "protocol", 5, "MQTT version: 5, or 3 for 3.1.1")
	fs.DurationVar(&c.KeepAlive, "keepalive", 0, "MQTT keep-alive (default 30s)")
	fs.UintVar(&o.receiveMax, "receive-max", 0, "MQTT 5 Receive Maximum announced in CONNECT (default 1024; connections: 32)")
	fs.IntVar(&c.MaxInflight, "max-inflight", 0, "MQTT 3.1.1: QoS 1 publishes awaiting PUBACK per connection (default 1024)")
	fs.Float64Var(&c.ConnRate, "conn-rate", 0, "connection attempts per second, reconnects included (default 500)")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 0, "dial + CONNECT → CONNACK timeout (default 10s)")
	fs.StringVar(&o.sources, "source", "", "comma-separated local `addresses` to connect from, in turn (e.g. 127.0.0.2,127.0.0.3) to go past one address's ephemeral ports")
	fs.BoolVar(&c.Reconnect, "reconnect", workload == loadtest.WorkloadConnections, "reconnect lost connections with jittered exponential backoff")
	fs.DurationVar(&c.ReconnectMin, "reconnect-min", 0, "first reconnect backoff bound (default 100ms)")
	fs.DurationVar(&c.ReconnectMax, "reconnect-max", 0, "largest reconnect backoff bound (default 5s)")
	fs.IntVar(&c.PID, "pid", 0, "broker process `id`: report its resident memory (/proc/PID/status VmRSS) before and after the connection ramp")
	fs.StringVar(&c.MetricsURL, "metrics", "", "or a Prometheus `URL` exposing process_resident_memory_bytes")
	fs.StringVar(&c.RunID, "run-id", "", "tag for topics, client ids, user ids and payloads (default random)")

	// Output.
	fs.StringVar(&o.jsonFile, "json", "", "write the report as JSON to `FILE`")
	fs.StringVar(&o.plotFile, "plot", "", "draw latency percentiles and throughput over time to `FILE.png`")
	fs.StringVar(&o.plotDim, "plot-size", "1000x700", "chart size in pixels, `WxH`")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines")
	fs.DurationVar(&c.ProgressInterval, "progress", 0, "progress line and chart interval (default 1s)")
	logLevel := fs.String("log-level", "warn", "log `level` on stderr: debug, info, warn, error")

	if workload != loadtest.WorkloadConnections {
		fs.Float64Var(&c.Rate, "rate", 0, "messages per second in total, open loop (default 1000)")
		fs.DurationVar(&c.Duration, "duration", 0, "sending window, ramp included (default 10s)")
		fs.DurationVar(&c.Ramp, "ramp", 0, "ramp the send rate up linearly from 0 over this long")
		fs.DurationVar(&c.Drain, "drain", 0, "after sending, wait at most this long for PUBACKs and deliveries (default 5s)")
		fs.IntVar(&c.MaxBacklog, "max-backlog", 0, "per sending connection, due messages allowed to wait for the socket before being shed (default 100000)")
		fs.IntVar(&c.Size, "size", 0, "payload bytes (raw: default 64, min 28; dm, group: default 100)")
	}
	switch workload {
	case loadtest.WorkloadRaw, loadtest.WorkloadConnections:
		fs.StringVar(&c.Username, "username", "", "MQTT username")
		fs.StringVar(&c.Password, "password", "", "MQTT password")
	}
	switch workload {
	case loadtest.WorkloadRaw:
		fs.UintVar(&o.qos, "qos", 1, "QoS, 0 or 1")
		fs.IntVar(&c.Publishers, "publishers", 1, "publisher connections")
		fs.IntVar(&c.Subscribers, "subscribers", 1, "subscriber connections")
		fs.IntVar(&c.Topics, "topics", 1, "topics: publisher i → topic i%topics, subscriber j ← topic j%topics (1: full fan-out)")
		fs.StringVar(&c.TopicPrefix, "topic-prefix", "parley-lt", "topics are PREFIX/RUNID/tN")
	case loadtest.WorkloadConnections:
		fs.IntVar(&c.Conns, "conns", 1000, "connections to open")
		fs.DurationVar(&c.Hold, "hold", 0, "hold them this long after the ramp (default 10s)")
		fs.DurationVar(&c.Settle, "settle", 0, "wait this long after the ramp before sampling memory (default 2s)")
		fs.BoolVar(&c.Subscribe, "subscribe", false, "each connection subscribes to a topic of its own")
	}
	switch workload {
	case loadtest.WorkloadDM, loadtest.WorkloadGroup, loadtest.WorkloadConnections:
		fs.StringVar(&o.http, "http", "", "Parley HTTP API `URL`, or one per node, comma-separated: users are provisioned through all at once (default http://127.0.0.1:8080)")
		fs.StringVar(&c.Admin, "admin", "", "Parley admin `name:password` (PARLEY_ADMINS) for bulk user provisioning"+
			map[bool]string{true: "; connections then log in as Parley users", false: ""}[workload == loadtest.WorkloadConnections])
		fs.StringVar(&c.UserPrefix, "user-prefix", "", "user ids are PREFIX + index (default lt-RUNID-)")
		fs.StringVar(&c.UserPassword, "user-password", "", "password of the created users (default lt-password-RUNID)")
	}
	switch workload {
	case loadtest.WorkloadDM, loadtest.WorkloadGroup:
		fs.DurationVar(&c.SessionExpiry, "session-expiry", 0, "persistent session expiry (default 5m)")
	}
	switch workload {
	case loadtest.WorkloadDM:
		fs.IntVar(&c.Users, "users", 100, "users, each with one persistent connection")
		fs.Float64Var(&c.CrossNode, "cross-node", 0, "with several brokers: `share` of DMs sent to a user on another broker (default 0.9; 1: all)")
	case loadtest.WorkloadGroup:
		fs.IntVar(&c.Groups, "groups", 10, "groups")
		fs.IntVar(&c.Members, "members", 10, "members per group (each a user with a connection)")
	}
	if err := fs.Parse(args); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			err = errUsageShown{err}
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := o.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	if o.qos > 1 {
		return nil, fmt.Errorf("-qos must be 0 or 1")
	}
	c.QoS = byte(o.qos)
	if o.receiveMax > 65535 {
		return nil, fmt.Errorf("-receive-max must be at most 65535")
	}
	c.ReceiveMaximum = uint16(o.receiveMax)
	var err error
	if c.Brokers, err = splitList("-broker", o.brokers); err != nil {
		return nil, err
	}
	if c.HTTP, err = splitList("-http", o.http); err != nil {
		return nil, err
	}
	if o.sources != "" {
		for _, s := range strings.Split(o.sources, ",") {
			ip := net.ParseIP(strings.TrimSpace(s))
			if ip == nil {
				return nil, fmt.Errorf("-source: %q is not an IP address", s)
			}
			c.Sources = append(c.Sources, ip)
		}
	}
	w, h, ok := strings.Cut(o.plotDim, "x")
	var err1, err2 error
	o.plotW, err1 = strconv.Atoi(w)
	o.plotH, err2 = strconv.Atoi(h)
	if !ok || err1 != nil || err2 != nil || o.plotW <= 0 || o.plotH <= 0 {
		return nil, fmt.Errorf("-plot-size: want WxH, got %q", o.plotDim)
	}
	if o.plotFile == "" {
		o.plotW, o.plotH = report.DefaultPlotWidth, report.DefaultPlotHeight
	}
	return o, nil
}

// splitList splits a comma-separated flag value; empty gives nil (the
// default), an empty item is an error.
func splitList(name, v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil, fmt.Errorf("%s: empty item in %q", name, v)
		}
		out = append(out, s)
	}
	return out, nil
}
