package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// broker is one broker process under test.
type broker struct {
	name  string // "parley", "parley-pg", "mochi", "mosquitto"
	label string // for tables: "Parley (SQLite)", …
	mqtt  string // host:port
	http  string // Parley's HTTP root
	pprof string // root of /debug/pprof/ (Parley, bare mochi)
	user  string // plain-topic credentials (Parley's administrator)
	pass  string
	cmd   *exec.Cmd
	done  chan struct{}
	log   string // its output file
	after func() // cleanup after it stopped (drop its database)
}

func (b *broker) pid() int { return b.cmd.Process.Pid }

// stop asks the broker to stop (SIGTERM: Parley drains) and kills it after
// a while.
func (b *broker) stop() {
	if b == nil || b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(60 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	if b.after != nil {
		b.after()
	}
}

// spawn starts a command with its output in a file of the work directory.
func spawn(work, name string, env []string, bin string, args ...string) (*exec.Cmd, string, chan struct{}, error) {
	logFile := filepath.Join(work, name+".log")
	f, err := os.Create(logFile)
	if err != nil {
		return nil, "", nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, "", nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	return cmd, logFile, done, nil
}

// waitLog waits until the log file has a line matching re and returns the
// submatches, or fails when the process exits or the time is up.
func waitLog(logFile string, done chan struct{}, re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(logFile); err == nil {
			if m := re.FindStringSubmatch(string(b)); m != nil {
				return m, nil
			}
		}
		select {
		case <-done:
			return nil, fmt.Errorf("exited before it was ready (see %s)", logFile)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("not ready after %v (see %s)", timeout, logFile)
}

func randomSecret() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// parleyListening is Parley's start-up line in its JSON log: the addresses
// it got. Other attributes may come between them (a cluster node's name).
var parleyListening = regexp.MustCompile(`"msg":"parley listening",.*?"mqtt":"([^"]+)",.*?"http":"([^"]+)"`)

// startParley starts a Parley node on free loopback ports, on the embedded
// store in the work directory or on a fresh Postgres database (dropped when
// it stops), with an administrator for plain MQTT, no publish rate limit, a
// low bcrypt cost (to provision thousands of users quickly) and pprof on.
func startParley(o *options, name, label string, postgres bool, extraEnv ...string) (*broker, error) {
	spec := parleySpec{name: name, label: label, env: extraEnv}
	var drop func()
	if postgres {
		var err error
		if spec.dbURL, drop, err = createDatabase(o); err != nil {
			return nil, err
		}
	}
	b, err := startParleyNode(o, spec)
	if err != nil {
		if drop != nil {
			drop()
		}
		return nil, err
	}
	b.after = drop
	return b, nil
}

// parleySpec is a Parley node to start.
type parleySpec struct {
	name, label string
	dbURL       string   // Postgres URL; empty: the embedded store in the work directory
	adminPass   string   // the bench administrator's password (default: random)
	env         []string // more settings, PARLEY_…=…
}

// createDatabase creates a throwaway Postgres database and returns its URL
// and a function that drops it.
func createDatabase(o *options) (url string, drop func(), err error) {
	db := fmt.Sprintf("parley_bench_%d_%s", time.Now().Unix(), randomSecret()[:6])
	if out, err := exec.Command("createdb", "-h", o.pgHost, "-U", o.pgUser, db).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("createdb %s: %v: %s", db, err, out)
	}
	drop = func() {
		if out, err := exec.Command("dropdb", "-h", o.pgHost, "-U", o.pgUser, "--if-exists", "--force", db).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "parley-bench: dropdb %s: %v: %s\n", db, err, out)
		}
	}
	return fmt.Sprintf("postgres://%s@%s:5432/%s?sslmode=disable", o.pgUser, o.pgHost, db), drop, nil
}

// startParleyNode starts one Parley process as startParley describes and
// waits until it listens.
func startParleyNode(o *options, spec parleySpec) (*broker, error) {
	b := &broker{name: spec.name, label: spec.label, user: "bench", pass: spec.adminPass}
	if b.pass == "" {
		b.pass = randomSecret()
	}
	env := []string{
		"PARLEY_MQTT_ADDR=127.0.0.1:0", "PARLEY_WS_ADDR=127.0.0.1:0", "PARLEY_HTTP_ADDR=127.0.0.1:0",
		"PARLEY_ADMINS=" + b.user + ":" + b.pass, "PARLEY_LIMITS_RATE=-1", "PARLEY_AUTH_BCRYPT_COST=4",
		"PARLEY_DEBUG_PPROF=true", "PARLEY_LOG_FORMAT=json", "PARLEY_LOG_LEVEL=info",
		// Every simulated device connects from 127.0.0.1.
		"PARLEY_LIMITS_MAX_CONNECTIONS_PER_IP=-1", "PARLEY_LIMITS_CONNECT_RATE_PER_IP=-1",
	}
	if spec.dbURL != "" {
		env = append(env, "PARLEY_DATABASE_URL="+spec.dbURL)
	} else {
		dir := filepath.Join(o.work, spec.name+"-data")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		env = append(env, "PARLEY_DATABASE_PATH="+filepath.Join(dir, "parley.db"))
	}
	env = append(env, spec.env...)
	var err error
	b.cmd, b.log, b.done, err = spawn(o.work, spec.name, env, filepath.Join(o.bin, "parley"))
	if err != nil {
		return nil, err
	}
	m, err := waitLog(b.log, b.done, parleyListening, 60*time.Second)
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("parley: %w", err)
	}
	b.mqtt, b.http, b.pprof = m[1], m[2], m[2]
	return b, nil
}

var mochiListening = regexp.MustCompile(`baremochi listening on (\S+) \(pid \d+\)\nbaremochi pprof on (http://\S+)/debug/pprof/`)

// startMochi starts bare mochi-mqtt with its defaults.
func startMochi(o *options) (*broker, error) {
	b := &broker{name: "mochi", label: "bare mochi"}
	var err error
	b.cmd, b.log, b.done, err = spawn(o.work, b.name, nil, filepath.Join(o.bin, "baremochi"),
		"-addr", "127.0.0.1:0", "-pprof", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m, err := waitLog(b.log, b.done, mochiListening, 10*time.Second)
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("baremochi: %w", err)
	}
	b.mqtt, b.pprof = m[1], m[2]
	return b, nil
}

// startMosquitto starts a Mosquitto of our own on a free port (the system's
// one on 1883 stays untouched), with its defaults except: no persistence,
// and TCP_NODELAY like the Go brokers (Go sets it on every TCP connection;
// without it Mosquitto's PUBACKs wait for Nagle's algorithm).
func startMosquitto(o *options) (*broker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(o.work, "mosquitto.conf")
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"+
		"max_connections -1\nlog_dest stderr\nlog_type error\nlog_type warning\n", port)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	b := &broker{name: "mosquitto", label: "Mosquitto", mqtt: fmt.Sprintf("127.0.0.1:%d", port)}
	b.cmd, b.log, b.done, err = spawn(o.work, b.name, nil, o.mosquitto, "-c", conf)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.mqtt, time.Second)
		if err == nil {
			c.Close()
			return b, nil
		}
		select {
		case <-b.done:
			return nil, fmt.Errorf("mosquitto exited (see %s)", b.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.stop()
			return nil, fmt.Errorf("mosquitto: not accepting connections on %s (see %s)", b.mqtt, b.log)
		}
	}
}

// cpuSeconds returns a process's user + system CPU time.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces: fields count from
	// after its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	const clkTck = 100 // USER_HZ, 100 on every Linux architecture Go supports here
	return float64(utime+stime) / clkTck, nil
}

// goMem is a Go broker's memory right after a garbage collection.
type goMem struct {
	HeapInuse  int64 `json:"heap_inuse_bytes"`
	StackInuse int64 `json:"stack_inuse_bytes"`
	Goroutines int64 `json:"goroutines"`
}

var memStatLine = regexp.MustCompile(`(?m)^# (HeapInuse|Stack) = (\d+)`)

// gcMem forces a garbage collection in a Go broker through pprof
// (/debug/pprof/heap?gc=1) and reads its heap and stack in use.
func gcMem(ctx context.Context, pprof string) (goMem, error) {
	var m goMem
	get := func(path string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, pprof+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: %s", path, resp.Status)
		}
		return io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	}
	b, err := get("/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return m, fmt.Errorf("heap profile: %w", err)
	}
	for _, sm := range memStatLine.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseInt(sm[2], 10, 64)
		switch sm[1] {
		case "HeapInuse":
			m.HeapInuse = v
		case "Stack":
			m.StackInuse = v
		}
	}
	if m.HeapInuse == 0 {
		return m, errors.New("heap profile: no HeapInuse")
	}
	if b, err := get("/debug/pprof/goroutine?debug=1"); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		if sc.Scan() {
			_, n, _ := strings.Cut(sc.Text(), "total ")
			m.Goroutines, _ = strconv.ParseInt(strings.TrimSpace(n), 10, 64)
		}
	}
	return m, nil
}

// gitDescribe names the source the brokers were built from.
func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// commandOutput returns the first line a command prints (mosquitto -h exits
// with status 3 after printing its version).
func commandOutput(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	line := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	if line == "" {
		return "unknown"
	}
	return line
}

// loadAvg returns the 1-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// writeJSON writes v as indented JSON.
func writeJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(name, append(b, '\n'), 0o644)
}
