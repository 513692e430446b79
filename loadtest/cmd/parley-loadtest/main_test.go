package main

import (
	"bytes"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/parleychat/parley/loadtest/baremochi"
	"github.com/parleychat/parley/loadtest/report"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestUsage(t *testing.T) {
	tests := map[string]struct {
		args []string
		code int
		want string
	}{
		"no args":           {nil, exitUsage, "usage: parley-loadtest WORKLOAD"},
		"help":              {[]string{"help"}, exitOK, "Workloads:"},
		"unknown workload":  {[]string{"bogus"}, exitUsage, `unknown workload "bogus"`},
		"bad flag":          {[]string{"raw", "-nope"}, exitUsage, "flag provided but not defined: -nope"},
		"workload help":     {[]string{"dm", "-h"}, exitOK, "-admin"},
		"bad qos":           {[]string{"raw", "-qos", "2"}, exitUsage, "-qos must be 0 or 1"},
		"bad source":        {[]string{"raw", "-source", "127.0.0.2,nope"}, exitUsage, `"nope" is not an IP address`},
		"bad config":        {[]string{"raw", "-size", "10", "-broker", "127.0.0.1:1"}, exitError, "size must be at least 28"},
		"empty broker":      {[]string{"raw", "-broker", "127.0.0.1:1,,127.0.0.1:2"}, exitUsage, "-broker: empty item"},
		"bad broker":        {[]string{"raw", "-broker", "127.0.0.1:1,nope"}, exitError, `broker "nope"`},
		"empty http":        {[]string{"dm", "-http", "http://a:1,"}, exitUsage, "-http: empty item"},
		"bad cross-node":    {[]string{"dm", "-broker", "127.0.0.1:1,127.0.0.1:2", "-cross-node", "2"}, exitError, "cross-node share"},
		"cross-node on raw": {[]string{"raw", "-cross-node", "0.5"}, exitUsage, "flag provided but not defined: -cross-node"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr.String())
			}
		})
	}
}

func TestParseBrokers(t *testing.T) {
	tests := map[string]struct {
		args      []string
		brokers   []string
		http      []string
		crossNode float64
	}{
		"defaults": {args: []string{"dm"}},
		"one":      {args: []string{"dm", "-broker", "10.0.0.1:1883", "-http", "http://10.0.0.1:8080"}, brokers: []string{"10.0.0.1:1883"}, http: []string{"http://10.0.0.1:8080"}},
		"three": {
			args:    []string{"dm", "-broker", "a:1, b:2 ,c:3", "-http", "http://a:8080,http://b:8080", "-cross-node", "0.75"},
			brokers: []string{"a:1", "b:2", "c:3"}, http: []string{"http://a:8080", "http://b:8080"}, crossNode: 0.75,
		},
		"connections": {args: []string{"connections", "-broker", "a:1,b:2"}, brokers: []string{"a:1", "b:2"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o, err := parseFlags(tc.args[0], tc.args[1:], io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			c := o.cfg
			if tc.brokers == nil {
				tc.brokers = []string{"127.0.0.1:1883"} // the flag's default
			}
			if !slices.Equal(c.Brokers, tc.brokers) || !slices.Equal(c.HTTP, tc.http) || c.CrossNode != tc.crossNode {
				t.Errorf("brokers %q, http %q, cross-node %v", c.Brokers, c.HTTP, c.CrossNode)
			}
			if err := c.Defaults().Validate(); err != nil {
				t.Errorf("validate: %v", err)
			}
		})
	}
}

func TestRawRunWritesReports(t *testing.T) {
	b, err := baremochi.Start(baremochi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dir := t.TempDir()
	jsonFile, plotFile := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.png")
	var stdout, stderr bytes.Buffer
	code := run([]string{"raw", "-broker", b.Addr(), "-qos", "1", "-rate", "200", "-duration", "1s",
		"-progress", "250ms", "-json", jsonFile, "-plot", plotFile, "-plot-size", "640x480"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{"MESSAGES", "ACCOUNTING", "publish to delivery"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "sending") {
		t.Errorf("no progress lines:\n%s", stderr.String())
	}
	f, err := os.Open(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := report.ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Messages.Sent != 200 || rep.Accounting.Delivered != 200 || rep.Lost() != 0 {
		t.Errorf("report: messages %+v, accounting %+v", *rep.Messages, *rep.Accounting)
	}
	p, err := os.Open(plotFile)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	img, err := png.Decode(p)
	if err != nil {
		t.Fatal(err)
	}
	if s := img.Bounds().Size(); s.X != 640 || s.Y != 480 {
		t.Errorf("plot size %v", s)
	}
}
