package mqttclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// Dialer opens the TCP connections under the MQTT clients.
type Dialer struct {
	// Sources are local addresses to bind, used in turn. Each local address
	// has its own ephemeral ports (about 28 K on Linux by default) towards one
	// broker address, so several, such as 127.0.0.2 and 127.0.0.3 on
	// loopback, carry a test past that. Empty: the system picks.
	Sources []net.IP
	// Limiter limits connection attempts, reconnects included. nil: none.
	Limiter *rate.Limiter
	// Timeout bounds one TCP dial (default 10s).
	Timeout time.Duration

	next atomic.Uint64
}

// Dial opens a TCP connection to addr, waiting for the rate limiter first.
func (d *Dialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	if d.Limiter != nil {
		if err := d.Limiter.Wait(ctx); err != nil {
			return nil, fmt.Errorf("dial %s: wait for connection rate limit: %w", addr, err)
		}
	}
	nd := net.Dialer{Timeout: d.Timeout}
	if nd.Timeout == 0 {
		nd.Timeout = 10 * time.Second
	}
	var src net.IP
	if n := len(d.Sources); n > 0 {
		src = d.Sources[(d.next.Add(1)-1)%uint64(n)]
		nd.LocalAddr = &net.TCPAddr{IP: src}
	}
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, classifyDialError(err, addr, src)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true) // already Go's default; latency matters more than packet count here
	}
	return c, nil
}

// ResourceError is a dial that failed for lack of a local resource: file
// descriptors or ephemeral ports. Its Advice says what to do.
type ResourceError struct {
	Err    error
	Advice string
}

func (e *ResourceError) Error() string { return e.Err.Error() }
func (e *ResourceError) Unwrap() error { return e.Err }

func classifyDialError(err error, addr string, src net.IP) error {
	wrapped := fmt.Errorf("dial %s: %w", addr, err)
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return &ResourceError{Err: wrapped, Advice: FileLimitAdvice()}
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		from := "the default source address"
		if src != nil {
			from = "source " + src.String()
		}
		return &ResourceError{Err: wrapped, Advice: fmt.Sprintf(
			"out of ephemeral ports from %s to %s: add local source addresses with -source "+
				"(e.g. -source 127.0.0.2,127.0.0.3 on loopback; each adds ~28 K ports), "+
				"or widen net.ipv4.ip_local_port_range", from, addr)}
	}
	return wrapped
}

// FileLimitAdvice explains the open-file limit of this process and how to
// raise it.
func FileLimitAdvice() string {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return "too many open files: raise the limit with `ulimit -n N` before starting the test, or lower -conns"
	}
	advice := fmt.Sprintf("too many open files: this process may hold %d file descriptors (`ulimit -n`; hard limit %d). "+
		"Each MQTT connection takes one here, and one more in a broker running on the same machine. ", lim.Cur, lim.Max)
	if lim.Cur < lim.Max {
		advice += fmt.Sprintf("Raise the soft limit with `ulimit -n %d` in the shell that starts the test, or lower -conns", lim.Max)
	} else {
		advice += "The hard limit is reached: raising it needs root (/etc/security/limits.conf, or LimitNOFILE= for a " +
			"systemd unit); otherwise lower -conns, or run the broker and the load tester on different machines"
	}
	return advice
}

// Advice returns what to do about err, or "" when there is nothing to say.
func Advice(err error) string {
	var re *ResourceError
	if errors.As(err, &re) {
		return re.Advice
	}
	return ""
}
