package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
)

// init lowers a child parley's descriptor limit to PARLEY_TEST_NOFILE, for
// TestAcceptSurvivesDescriptorExhaustion. It runs before TestMain calls
// main; the Go runtime has already raised the soft limit to the hard one,
// so both are set.
func init() {
	if os.Getenv("PARLEY_TEST_CHILD") != "1" || os.Getenv("PARLEY_TEST_NOFILE") == "" {
		return
	}
	n, err := strconv.ParseUint(os.Getenv("PARLEY_TEST_NOFILE"), 10, 64)
	if err != nil {
		panic(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
		panic(err)
	}
}

// logged reports whether the child has written a line containing s.
func (c *child) logged(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Contains(c.stderr.String(), s)
}

// get fetches url with hc and returns the status and body.
func get(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAcceptSurvivesDescriptorExhaustion: parley runs with few file
// descriptors; connections (no CONNECT) are opened until its accept fails
// (EMFILE). Meanwhile /readyz, asked on a connection opened before, answers
// 503. Once they are closed, a real MQTT CONNECT succeeds, /metrics counts
// the accept errors and /readyz is 200 again.
func TestAcceptSurvivesDescriptorExhaustion(t *testing.T) {
	const nofile = 128
	c := startChild(t, "PARLEY_DATABASE_PATH="+filepath.Join(t.TempDir(), "parley.db"),
		"PARLEY_TEST_NOFILE="+strconv.Itoa(nofile), "PARLEY_MQTT_CONNECT_TIMEOUT=5m",
		"PARLEY_LIMITS_MAX_CONNECTIONS_PER_IP=-1", "PARLEY_LIMITS_CONNECT_RATE_PER_IP=-1")
	n := c.node(t)
	tok := n.User("alice")
	// One keep-alive connection to the API, opened before the descriptors
	// run out, so that /readyz can be asked while none can be accepted.
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	if code, body := get(t, hc, c.http+"/readyz"); code != 200 {
		t.Fatalf("/readyz before: %d %s", code, body)
	}

	// More connections than the child has descriptors: accept must fail.
	var conns []net.Conn
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for range nofile + 32 {
		conn, err := net.Dial("tcp", c.mqtt)
		if err != nil {
			t.Fatalf("dial after %d connections: %v", len(conns), err)
		}
		conns = append(conns, conn)
	}
	testwait.Until(t, 10*time.Second, fmt.Sprintf("an accept error logged with %d connections open and %d descriptors", len(conns), nofile),
		func() bool { return c.logged("accept failed") })
	if code, body := get(t, hc, c.http+"/readyz"); code != 503 || !strings.Contains(body, `"failing":"listeners"`) {
		t.Errorf("/readyz while accept fails: %d %s, want 503 naming the listeners", code, body)
	}

	for _, conn := range conns {
		conn.Close()
	}
	conns = nil
	testwait.Until(t, 10*time.Second, "an MQTT CONNECT accepted after the connections were closed", func() bool {
		cl, err := n.DialV5("alice", tok, "alice", brokertest.V5Options{})
		if err != nil {
			return false
		}
		if rc := cl.Pub(t, "u/alice", "after the storm"); rc != 0 {
			t.Fatalf("PUBACK %#x after recovery", rc)
		}
		cl.Close()
		return true
	})
	_, metrics := get(t, hc, c.http+"/metrics")
	var errs float64
	sc := bufio.NewScanner(strings.NewReader(metrics))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `parley_accept_errors_total{listener="mqtt"} `); ok {
			errs, _ = strconv.ParseFloat(v, 64)
		}
	}
	if errs < 1 {
		t.Fatalf(`parley_accept_errors_total{listener="mqtt"} = %v, want at least 1`, errs)
	}
	t.Logf("%v accept errors counted", errs)
	testwait.Until(t, 10*time.Second, "/readyz 200 after recovery", func() bool {
		code, _ := get(t, hc, c.http+"/readyz")
		return code == 200
	})
}
