// Package rss reads a process's resident memory, from /proc for a local
// process or from a Prometheus endpoint's process_resident_memory_bytes, so the
// load tester can report a broker's memory per connection.
package rss

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// ErrNotFound: the source had no resident memory figure.
var ErrNotFound = errors.New("resident memory not found")

// Sampler reads one process's resident memory in bytes.
type Sampler interface {
	RSS(ctx context.Context) (int64, error)
	// String names the source, for reports: "pid 1234" or the URL.
	String() string
}

// Proc samples a local process through /proc/PID/status.
type Proc struct {
	PID  int
	Root string // default "/proc"
}

// Self samples the calling process.
func Self() Proc { return Proc{PID: os.Getpid()} }

// RSS returns the process's VmRSS.
func (p Proc) RSS(context.Context) (int64, error) {
	root := p.Root
	if root == "" {
		root = "/proc"
	}
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/status", root, p.PID))
	if err != nil {
		return 0, fmt.Errorf("rss of pid %d: %w", p.PID, err)
	}
	v, err := ParseStatus(b)
	if err != nil {
		return 0, fmt.Errorf("rss of pid %d: %w", p.PID, err)
	}
	return v, nil
}

func (p Proc) String() string { return fmt.Sprintf("pid %d", p.PID) }

// ParseStatus returns VmRSS from the contents of /proc/PID/status, in bytes.
func ParseStatus(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, ErrNotFound
}

// Metrics samples process_resident_memory_bytes from a Prometheus text
// endpoint, for a broker in another container or on another machine.
type Metrics struct {
	URL    string
	Client *http.Client // default http.DefaultClient
}

// RSS fetches the endpoint and returns the metric.
func (m Metrics) RSS(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL, nil)
	if err != nil {
		return 0, fmt.Errorf("rss from %s: %w", m.URL, err)
	}
	c := m.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("rss from %s: %w", m.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("rss from %s: status %s", m.URL, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("rss from %s: %w", m.URL, err)
	}
	v, err := ParseMetrics(b)
	if err != nil {
		return 0, fmt.Errorf("rss from %s: %w", m.URL, err)
	}
	return v, nil
}

func (m Metrics) String() string { return m.URL }

// ParseMetrics returns process_resident_memory_bytes from Prometheus text
// exposition format.
func ParseMetrics(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "process_resident_memory_bytes")
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			i := strings.IndexByte(rest, '}')
			if i < 0 {
				return 0, fmt.Errorf("malformed line %q", line)
			}
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, fmt.Errorf("malformed line %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("process_resident_memory_bytes: %w", err)
		}
		return int64(v), nil
	}
	return 0, ErrNotFound
}
