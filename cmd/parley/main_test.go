package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
	"github.com/parleychat/parley/storage/sqlite"
)

// TestMain doubles as the parley command when PARLEY_TEST_CHILD is set, so
// that tests can run the real command in a process of its own and kill it.
func TestMain(m *testing.M) {
	if os.Getenv("PARLEY_TEST_CHILD") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte("mqtt:\n  addr: \":1000\"\nws:\n  addr: \":2000\"\n  allowed_origins: [\"https://a.example\", \"https://b.example\"]\nlimits:\n  max_payload: 1024\n"), 0o600)
	cfg, path, _, err := loadConfig([]string{"-config", file, "-ws.addr", ":2002"},
		env(map[string]string{"PARLEY_MQTT_ADDR": ":1001", "PARLEY_WS_ADDR": ":2001", "PARLEY_ADMINS": "root:secret-pw"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]any{
		"file path":           {path, file},
		"env over file":       {cfg.MQTTAddr, ":1001"},
		"flag over env":       {cfg.WSAddr, ":2002"},
		"file over default":   {cfg.MaxPayload, 1024},
		"default":             {cfg.HTTPAddr, ":8080"},
		"list from file":      {strings.Join(cfg.AllowedOrigins, " "), "https://a.example https://b.example"},
		"duration default":    {cfg.TokenTTL, 720 * time.Hour},
		"bool default":        {cfg.OpenReg, true},
		"admins from env":     {cfg.Admins, "root:secret-pw"},
		"embedded by default": {cfg.DatabaseURL, ""},
	}
	for name, c := range checks {
		if fmt.Sprint(c[0]) != fmt.Sprint(c[1]) {
			t.Errorf("%s: got %v, want %v", name, c[0], c[1])
		}
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	cases := map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"unknown key":       {[]string{"-config", write("a.yaml", "mqtt:\n  adress: x\n")}, nil, `unknown setting "mqtt.adress"`},
		"missing file":      {[]string{"-config", filepath.Join(dir, "nope.yaml")}, nil, "no such file"},
		"bad number":        {nil, map[string]string{"PARLEY_LIMITS_MAX_PAYLOAD": "big"}, "PARLEY_LIMITS_MAX_PAYLOAD"},
		"bad duration flag": {[]string{"-auth.token_ttl", "forever"}, nil, "auth.token_ttl"},
		"payload range":     {[]string{"-limits.max_payload", "10"}, nil, "limits.max_payload"},
		"not postgres":      {nil, map[string]string{"PARLEY_DATABASE_URL": "mysql://x"}, "database.url"},
		"bad admins":        {nil, map[string]string{"PARLEY_ADMINS": "nopassword"}, "name:password"},
		"log level":         {[]string{"-log.level", "loud"}, nil, "log.level"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, _, err := loadConfig(c.args, env(c.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-check-config", "-config", "../../configs/parley.yaml"},
		env(map[string]string{"PARLEY_ADMINS": "root:hunter2hunter2", "PARLEY_DATABASE_URL": "postgres://u:secretpw@h/db"}), &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	s := out.String()
	for _, want := range []string{"mqtt.addr", ":1883", "root:***", "postgres://u:***@h/db"} {
		if !strings.Contains(s, want) {
			t.Errorf("-check-config output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "hunter2") || strings.Contains(s, "secretpw") {
		t.Errorf("-check-config printed a secret:\n%s", s)
	}
	if code := run(context.Background(), []string{"-check-config", "-log.format", "xml"}, env(nil), &out, &errOut); code != 2 {
		t.Fatalf("invalid config: exit %d, want 2", code)
	}
}

// TestPortTaken: a taken port is reported with the listener and the setting.
func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	db := pgtest.NewDatabase(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-mqtt.addr", ln.Addr().String(), "-ws.addr", "127.0.0.1:0", "-http.addr", "127.0.0.1:0"},
		env(map[string]string{"PARLEY_DATABASE_URL": db}), &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{"MQTT listener", ln.Addr().String(), "mqtt.addr", "PARLEY_MQTT_ADDR", "address already in use"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("error output lacks %q:\n%s", want, errOut.String())
		}
	}
}

// child is the parley command running in its own process.
type child struct {
	cmd     *exec.Cmd
	mqtt    string
	http    string
	mu      sync.Mutex
	stderr  bytes.Buffer
	exited  chan struct{}
	exitErr error
}

var listening = regexp.MustCompile(`msg="parley listening" mqtt=(\S+) ws=\S+ http=(\S+)`)

func startChild(t *testing.T, extraEnv ...string) *child {
	t.Helper()
	return startChildAt(t, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", extraEnv...)
}

// startChildAt starts parley with its MQTT, WebSocket and HTTP listeners at
// the given addresses.
func startChildAt(t *testing.T, mqttAddr, wsAddr, httpAddr string, extraEnv ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-mqtt.addr", mqttAddr, "-ws.addr", wsAddr, "-http.addr", httpAddr)
	cmd.Env = append(os.Environ(), append([]string{"PARLEY_TEST_CHILD=1", "PARLEY_LIMITS_RATE=-1",
		"PARLEY_AUTH_BCRYPT_COST=4", "PARLEY_CONFIG_FILE_IGNORED=1"}, extraEnv...)...)
	cmd.Dir = t.TempDir() // no configs/parley.yaml there: defaults and environment only
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			c.stderr.WriteString(line + "\n")
			if m := listening.FindStringSubmatch(line); m != nil && c.mqtt == "" {
				c.mqtt, c.http = m[1], m[2]
				close(ready)
			}
			c.mu.Unlock()
		}
		c.exitErr = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.exited
		if t.Failed() {
			c.mu.Lock()
			t.Logf("parley output:\n%s", c.stderr.String())
			c.mu.Unlock()
		}
	})
	select {
	case <-ready:
	case <-c.exited:
		t.Fatalf("parley exited before listening: %v\n%s", c.exitErr, c.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("parley did not start\n%s", c.stderr.String())
	}
	return c
}

func (c *child) node(t *testing.T) *brokertest.Node {
	return brokertest.Remote(t, c.mqtt, c.http)
}

// TestSIGTERMDrains: SIGTERM stops accepting, drains and exits 0.
func TestSIGTERMDrains(t *testing.T) {
	db := pgtest.NewDatabase(t)
	c := startChild(t, "PARLEY_DATABASE_URL="+db)
	n := c.node(t)
	tok := n.User("alice")
	alice := n.MustV5("alice", tok, "alice", brokertest.V5Options{})
	alice.Pub(t, "u/alice", "note to self")
	// The metrics operators rely on are exported.
	resp, err := http.Get(c.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"parley_mqtt_connections 1", "parley_mqtt_messages_received_total", "parley_mqtt_messages_sent_total",
		"parley_store_batch_size_count", "parley_store_batch_seconds_bucket", "parley_entries_stored_total{type=\"msg\"} 1",
		"process_resident_memory_bytes", "go_goroutines"} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("parley did not exit after SIGTERM")
	}
	if c.exitErr != nil {
		t.Fatalf("exit after SIGTERM: %v", c.exitErr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !strings.Contains(c.stderr.String(), "shut down") {
		t.Fatalf("no shutdown log:\n%s", c.stderr.String())
	}
}

// TestKill9LosesNoAcknowledgedMessage: parley is killed with SIGKILL while
// 20 clients send; every message that got a PUBACK is stored and reaches its
// recipient after the restart.
func TestKill9LosesNoAcknowledgedMessage(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.NewDatabase(t)
		testKill9(t, "PARLEY_DATABASE_URL="+url, func(ctx context.Context) (storage.Store, error) {
			return postgres.Open(ctx, postgres.Config{URL: url, Writers: 1}, nil)
		})
	})
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "parley.db")
		testKill9(t, "PARLEY_DATABASE_PATH="+path, func(ctx context.Context) (storage.Store, error) {
			return sqlite.Open(ctx, sqlite.Config{Path: path, Readers: 1}, nil)
		})
	})
}

func testKill9(t *testing.T, storeEnv string, open func(ctx context.Context) (storage.Store, error)) {
	c := startChild(t, storeEnv)
	n := c.node(t)
	bt := n.User("bob")
	bob := n.MustV5("bob", bt, "bob/phone", brokertest.V5Options{SessionExpiry: 3600})
	bob.Sub(t, "u/bob", 1)
	bob.Close()
	// The new device's cursor (at the inbox's end) must be in the store
	// before the crash, or after it the device would be new again and
	// start at the end: wait for it in the store itself.
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Patience(10*time.Second))
	defer cancel()
	st, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "bob's cursor in the store", func() bool {
		_, err := st.GetCursor(ctx, "bob/phone", "u/bob")
		return err == nil
	})
	st.Close()

	const senders = 20
	var mu sync.Mutex
	acked := map[string]bool{} // cids with a PUBACK 0
	var wg sync.WaitGroup
	for i := 0; i < senders; i++ {
		id := fmt.Sprintf("s%02d", i)
		tok := n.User(id)
		cl := n.MustV5(id, tok, id, brokertest.V5Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				cid := fmt.Sprintf("%s-%d", id, j)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				pr, err := cl.Publish(ctx, pahoPublish("u/bob", `{"cid":"`+cid+`","body":{}}`))
				cancel()
				if err != nil || pr == nil {
					return // the server is gone
				}
				if pr.ReasonCode == 0 {
					mu.Lock()
					acked[cid] = true
					mu.Unlock()
				}
			}
		}()
	}
	// Kill it in the middle of the traffic: once some hundreds of messages
	// are acknowledged (the senders go on until the process is gone).
	testwait.Until(t, 10*time.Second, "200 acknowledged messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 200
	})
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.exited
	wg.Wait()
	mu.Lock()
	total := len(acked)
	mu.Unlock()
	if total < 20 {
		t.Fatalf("only %d messages acknowledged before the kill: the test proves nothing", total)
	}
	t.Logf("%d messages acknowledged before SIGKILL", total)

	c2 := startChild(t, storeEnv)
	n2 := c2.node(t)
	bob = n2.MustV5("bob", bt, "bob/phone", brokertest.V5Options{SessionExpiry: 3600})
	bob.Sub(t, "u/bob", 1)
	got := bob.In.WaitFor(t, 60*time.Second, "every acknowledged message", func(ms []brokertest.Msg) bool {
		// Messages stored but not acknowledged before the kill arrive
		// too, interleaved by seq: wait for every acknowledged one.
		have := map[string]bool{}
		for _, m := range ms {
			var e struct{ Type, Cid string }
			if json.Unmarshal(m.Payload, &e) == nil && e.Type == protocol.TypeMsg {
				have[e.Cid] = true
			}
		}
		for cid := range acked {
			if !have[cid] {
				return false
			}
		}
		return true
	})
	delivered := map[string]bool{}
	var last int64
	for _, m := range got {
		e := m.Entry(t)
		if e["type"] != "msg" {
			continue
		}
		seq := int64(e["seq"].(float64))
		if seq != last+1 {
			t.Fatalf("catch-up out of order or with a gap: seq %d after %d", seq, last)
		}
		last = seq
		delivered[e["cid"].(string)] = true
	}
	for cid := range acked {
		if !delivered[cid] {
			t.Errorf("acknowledged message %s never reached bob", cid)
		}
	}
}
