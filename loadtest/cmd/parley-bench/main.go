// Command parley-bench runs Parley side by side with bare mochi-mqtt and
// Mosquitto on this machine and writes the comparison (`make bench`):
//
//  1. raw MQTT (3.1.1, four publisher → subscriber pairs, 64-byte payloads) at
//     QoS 0 and 1 against Parley, bare mochi and Mosquitto, one after the
//     other, each figure the median of -repeat runs: throughput at saturation
//     and delivery latency at a fixed rate, with the ratios Parley/Mosquitto
//     and Parley/bare mochi;
//  2. Parley's dm workload on the embedded store and on Postgres, and the
//     group workload;
//  3. the highest DM rate whose p99 publish → delivery stays under 100 ms, per
//     store;
//  4. idle connections: resident memory, Go heap and stacks after a GC, and
//     CPU per connection, at -idle-conns on each broker and at -max-conns on
//     Parley;
//  5. the dm workload on one Parley node and on a cluster of three on one
//     Postgres database, joined through NATS (a nats-server embedded in the
//     bench, or -cluster-nats): publish → delivery of DMs that cross nodes,
//     and its ratio to one node's.
//
// Results go to -out as a dated Markdown file and a JSON file; the Markdown
// is printed too. Every figure carries the 1-minute load average measured as
// its runs started: other work on the machine shows there.
//
//	go run ./loadtest/cmd/parley-bench -out bench/results
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	out, work, bin     string
	mosquitto          string
	pgHost, pgUser     string
	repeat             int
	quick              bool
	only               map[string]bool
	idleConns          int
	maxConns           int
	sources            []net.IP
	dmRate             float64
	dmUsers            int
	searchTarget       time.Duration
	clusterNATS        string
	keep               bool
	render             string
	log                *slog.Logger
	stderr             io.Writer
	rawDur, parleyDur  time.Duration
	hold               time.Duration
	rawRates, latRates [2]float64 // by QoS: throughput run, latency run
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "parley-bench:", err)
		return 2
	}
	if o.render != "" {
		if err := render(o.render, stdout); err != nil {
			fmt.Fprintln(stderr, "parley-bench:", err)
			return 1
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := bench(ctx, o)
	if res != nil {
		md := res.markdown()
		fmt.Fprint(stdout, md)
		if werr := res.write(o.out, md); werr != nil {
			fmt.Fprintln(stderr, "parley-bench:", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "parley-bench:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{stderr: stderr}
	fs := flag.NewFlagSet("parley-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", "bench/results", "`directory` for the dated results (Markdown and JSON)")
	fs.StringVar(&o.bin, "bin", "", "`directory` with parley and baremochi already built (default: build them from this module)")
	fs.StringVar(&o.mosquitto, "mosquitto", "mosquitto", "Mosquitto `binary`")
	fs.StringVar(&o.pgHost, "pg-host", "127.0.0.1", "Postgres `host` for the throwaway databases (createdb/dropdb)")
	fs.StringVar(&o.pgUser, "pg-user", "postgres", "Postgres `user` that may create databases")
	fs.IntVar(&o.repeat, "repeat", 3, "runs per figure (the median is reported)")
	fs.BoolVar(&o.quick, "quick", false, "short runs and few connections: checks the bench itself, not the brokers")
	only := fs.String("only", "raw,dm,group,search,idle,cluster", "comma-separated `sections` to run: raw, dm, group, search, idle, cluster")
	fs.IntVar(&o.idleConns, "idle-conns", 10000, "idle connections per broker")
	fs.IntVar(&o.maxConns, "max-conns", 19500, "idle connections for Parley's largest run (0: skip); ulimit -n bounds it")
	sources := fs.String("source", "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5", "local `addresses` the largest idle run connects from")
	fs.Float64Var(&o.dmRate, "dm-rate", 1000, "messages per second of the dm and group runs")
	fs.IntVar(&o.dmUsers, "dm-users", 200, "users of the dm runs")
	fs.DurationVar(&o.searchTarget, "search-p99", 100*time.Millisecond, "DM rate search: the highest rate whose p99 publish → delivery stays under this")
	fs.StringVar(&o.clusterNATS, "cluster-nats", "", "NATS server `URL` for the cluster section's nodes (default: one embedded in the bench on a free port, with JetStream)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (broker logs, every run's report)")
	fs.StringVar(&o.render, "render", "", "render the results `file` (JSON) of an earlier run as Markdown next to it, and run nothing")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.only = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		switch s = strings.TrimSpace(s); s {
		case "raw", "dm", "group", "search", "idle", "cluster":
			o.only[s] = true
		case "":
		default:
			return nil, fmt.Errorf("-only: unknown section %q", s)
		}
	}
	for _, s := range strings.Split(*sources, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("-source: %q is not an IP address", s)
		}
		o.sources = append(o.sources, ip)
	}
	if o.repeat < 1 {
		return nil, errors.New("-repeat must be at least 1")
	}
	o.rawDur, o.parleyDur, o.hold = 3*time.Second, 4*time.Second, 20*time.Second
	o.rawRates = [2]float64{100000, 25000}
	o.latRates = [2]float64{2000, 2000}
	if o.quick {
		o.rawDur, o.parleyDur, o.hold = time.Second, time.Second, 2*time.Second
		o.rawRates = [2]float64{5000, 5000}
		o.idleConns, o.maxConns = min(o.idleConns, 500), min(o.maxConns, 1000)
		o.dmUsers = min(o.dmUsers, 50)
	}
	return o, nil
}

func bench(ctx context.Context, o *options) (*results, error) {
	var err error
	o.work, err = os.MkdirTemp("", "parley-bench-")
	if err != nil {
		return nil, err
	}
	if !o.keep {
		defer os.RemoveAll(o.work)
	}
	lf, err := os.Create(filepath.Join(o.work, "loadtest.log"))
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	o.log = slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	o.progress("work directory %s", o.work)

	res := &results{
		Started: time.Now().UTC().Format("2006-01-02T15:04:05Z"),
		Env: environment{
			Git: gitDescribe(), Go: runtime.Version(), CPUs: runtime.NumCPU(),
			Kernel: commandOutput("uname", "-r"), Mosquitto: commandOutput(o.mosquitto, "-h"),
			FileLimit: commandOutput("sh", "-c", "ulimit -n"), LoadStart: loadAvg(),
		},
		Settings: map[string]string{
			"repeat": fmt.Sprint(o.repeat), "raw": fmt.Sprintf("MQTT 3.1.1, 4 publishers → 4 subscribers (pairs), 64 B, %v per run", o.rawDur),
			"raw_throughput_rate": fmt.Sprintf("offered %.0f/s (QoS 0), %.0f/s (QoS 1, at most %d in flight per publisher)", o.rawRates[0], o.rawRates[1], rawQoS1Inflight),
			"raw_latency_rate":    fmt.Sprintf("%.0f/s", o.latRates[0]),
			"parley":              "PARLEY_LIMITS_RATE=-1, PARLEY_AUTH_BCRYPT_COST=4, other settings at their defaults",
			"mosquitto":           "own process: defaults + persistence false, set_tcp_nodelay true",
			"quick":               fmt.Sprint(o.quick),
			"parley_duration":     o.parleyDur.String(),
		},
	}
	begin := time.Now()
	defer func() { res.Elapsed = time.Since(begin).Seconds() }()

	if o.bin == "" {
		o.bin = filepath.Join(o.work, "bin")
		o.progress("building parley and baremochi")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", o.bin+string(filepath.Separator), "./cmd/parley", "./loadtest/cmd/baremochi")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build: %v\n%s", err, out)
		}
	}

	sections := []struct {
		name string
		fn   func(context.Context, *options, *results) error
	}{
		{"raw", runRaw}, {"dm", runDM}, {"group", runGroup}, {"search", runSearch}, {"idle", runIdle}, {"cluster", runCluster},
	}
	var errs []error
	for _, s := range sections {
		if !o.only[s.name] {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if err := s.fn(ctx, o, res); err != nil {
			o.progress("%s: %v", s.name, err)
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
			res.Notes = append(res.Notes, fmt.Sprintf("section %s failed: %v", s.name, err))
		}
	}
	res.Env.LoadEnd = loadAvg()
	return res, errors.Join(errs...)
}

// render rewrites the Markdown of an earlier run from its JSON.
func render(name string, stdout io.Writer) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	md := res.markdown()
	fmt.Fprint(stdout, md)
	return os.WriteFile(strings.TrimSuffix(name, ".json")+".md", []byte(md), 0o644)
}

func (o *options) progress(format string, args ...any) {
	fmt.Fprintf(o.stderr, "[%s load %.2f] %s\n", time.Now().Format("15:04:05"), loadAvg(), fmt.Sprintf(format, args...))
}
