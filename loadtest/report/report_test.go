package report

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/loadtest/account"
	"github.com/parleychat/parley/loadtest/latency"
)

// sample returns a report like a raw run with some loss.
func sample() *Report {
	r := &Report{
		Tool: "parley-loadtest", Workload: "raw", Broker: "127.0.0.1:1883", Protocol: 5,
		Started: time.Date(2025, 11, 27, 16, 0, 0, 0, time.UTC), Elapsed: 12.5, SendWindow: 10,
		Config: map[string]string{"publishers": "4", "subscribers": "2", "rate": "1000"},
		Messages: &Messages{QoS: 1, Size: 100, Rate: 1000, Scheduled: 10000, Sent: 10000, Acked: 9998, Refused: 1, NoAck: 1,
			Delivered: 19994, Duplicates: 2, SendRate: 1000, DeliveryRate: 1999.4},
		Latency: map[string]latency.Summary{
			LatencyAck:      {Count: 9998, Min: 0.1, Mean: 0.3, P50: 0.25, P90: 0.4, P99: 0.9, P999: 2.5, Max: 7},
			LatencyDelivery: {Count: 19994, Min: 0.12, Mean: 0.35, P50: 0.3, P90: 0.5, P99: 1.1, P999: 3, Max: 8},
		},
		Accounting: &account.Result{Accepted: 9998, Expected: 19996, Delivered: 19993, Lost: 3, Duplicates: 2,
			Reordered: 1, InDoubt: 1, InDoubtDelivered: 1,
			LostSamples: []account.Loss{{Sender: 1, Seq: 17, Receiver: 0}, {Sender: 2, Seq: 99, Receiver: 1}}},
		Connections: Connections{Target: 6, Established: 6, RampSeconds: 0.01},
		Errors:      map[string]int64{"puback: quota exceeded (0x97)": 1, "no puback: connection lost": 1},
		Warnings:    []string{"something to know"},
	}
	for i := 1; i <= 10; i++ {
		wobble := 0.1 * math.Sin(float64(i))
		r.Series = append(r.Series, Point{
			T: float64(i), Sent: 1000, Acked: 1000, Delivered: 2000, Connections: 6,
			Ack:      latency.Summary{Count: 1000, P50: 0.25 + wobble, P90: 0.4, P99: 0.9 + wobble, P999: 2, Max: 3},
			Delivery: latency.Summary{Count: 2000, P50: 0.3, P90: 0.5 + wobble, P99: 1.1, P999: 2.5 + wobble, Max: 4},
		})
	}
	return r
}

func TestJSONRoundTrip(t *testing.T) {
	r := sample()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("round trip changed the report:\n got %+v\nwant %+v", got, r)
	}
	// A file round trip, as -json writes it.
	name := filepath.Join(t.TempDir(), "r.json")
	if err := r.WriteJSONFile(name); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, err := ReadJSON(f); err != nil || got.Accounting.Lost != 3 {
		t.Errorf("file round trip: %v, %+v", err, got)
	}
}

func TestSummary(t *testing.T) {
	tests := map[string]struct {
		report  func() *Report
		want    []string
		notWant []string
	}{
		"loss": {
			report: sample,
			want: []string{
				"parley-loadtest raw → 127.0.0.1:1883 (MQTT 5)",
				"publishers=4 rate=1000 subscribers=2",
				"MESSAGE LOSS: 3 of 19996 expected deliveries never arrived",
				"e.g. sender 1 seq 17 → receiver 0",
				"publish to puback", "publish to delivery",
				"19994", // delivered
				"ACCOUNTING", "LOST", "out of order",
				"1  puback: quota exceeded (0x97)\n",
				"WARNING: something to know",
			},
		},
		"clean": {
			report: func() *Report {
				r := sample()
				r.Accounting.Lost, r.Accounting.LostSamples = 0, nil
				return r
			},
			want:    []string{"ACCOUNTING", "p99.9"},
			notWant: []string{"MESSAGE LOSS", "!!!"},
		},
		"connections": {
			report: func() *Report {
				return &Report{Workload: "connections", Broker: "b", Protocol: 3,
					Connections: Connections{Target: 1000, Established: 990, Failed: 10},
					Memory:      &Memory{Source: "pid 42", BeforeBytes: 10 << 20, AfterRampBytes: 40 << 20, PerConnBytes: 31 << 10}}
			},
			want:    []string{"(MQTT 3.1.1)", "1000", "990", "MEMORY  (broker: pid 42)", "31.0 KiB", "10.0 MiB"},
			notWant: []string{"ACCOUNTING", "MESSAGES"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tc.report().WriteSummary(&buf); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("summary lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("summary has %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestPlot(t *testing.T) {
	for name, r := range map[string]*Report{
		"raw":         sample(),
		"connections": {Workload: "connections", Series: []Point{{T: 1, Connections: 500}, {T: 2, Connections: 1000}}},
		"empty":       {Workload: "raw", Messages: &Messages{}},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := r.WritePlot(&buf, 900, 600); err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != 900 || b.Dy() != 600 {
				t.Errorf("size = %v, want 900x600", b.Size())
			}
			if name == "raw" {
				if dir := os.Getenv("LOADTEST_PLOT_DIR"); dir != "" {
					_ = r.WritePlotFile(filepath.Join(dir, "sample.png"), 900, 600)
				}
			}
		})
	}
	if _, err := sample().Chart(10, 10); err == nil {
		t.Error("Chart(10, 10) did not fail")
	}
}
