package rss

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestParseStatus(t *testing.T) {
	status := "Name:\tbaremochi\nVmPeak:\t  900000 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n"
	if v, err := ParseStatus([]byte(status)); err != nil || v != 12345*1024 {
		t.Errorf("ParseStatus = %d, %v", v, err)
	}
	if _, err := ParseStatus([]byte("Name: x\n")); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing VmRSS: err = %v", err)
	}
}

func TestSelf(t *testing.T) {
	v, err := Self().RSS(context.Background())
	if err != nil || v < 1<<20 {
		t.Errorf("Self().RSS() = %d, %v", v, err)
	}
}

func TestMetrics(t *testing.T) {
	body := "# HELP process_resident_memory_bytes Resident memory size in bytes.\n" +
		"# TYPE process_resident_memory_bytes gauge\n" +
		"process_resident_memory_bytes_total_fake 1\n" +
		"process_resident_memory_bytes 4.2893056e+07\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) }))
	defer srv.Close()
	v, err := Metrics{URL: srv.URL}.RSS(context.Background())
	if err != nil || v != 42893056 {
		t.Errorf("Metrics.RSS = %d, %v", v, err)
	}
	if v, err := ParseMetrics([]byte(`process_resident_memory_bytes{instance="a"} 1024`)); err != nil || v != 1024 {
		t.Errorf("labelled: %d, %v", v, err)
	}
}
