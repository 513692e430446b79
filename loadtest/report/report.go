// Package report is the outcome of a load test run: one Report value, written
// as a summary table for people, as JSON for machines, and as a PNG chart of
// latency percentiles and throughput over time.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/parleychat/parley/loadtest/account"
	"github.com/parleychat/parley/loadtest/latency"
)

// Latency names used in Report.Latency.
const (
	LatencyAck      = "publish_to_puback"   // scheduled send → PUBACK
	LatencyDelivery = "publish_to_delivery" // scheduled send → arrival at a receiver
	// With several brokers, publish_to_delivery again, split by whether the
	// receiver is connected to the sender's broker or to another one.
	LatencyDeliverySameNode  = "publish_to_delivery_same_node"
	LatencyDeliveryCrossNode = "publish_to_delivery_cross_node"
	LatencyReceipt           = "delivered_receipt" // scheduled send → "delivered" receipt at the sender (dm)
	LatencyEcho              = "sender_copy"       // scheduled send → the sender's own copy (dm, group)
	LatencySendLag           = "send_lag"          // scheduled send → written to the socket
	LatencyConnect           = "connect"           // scheduled connect → CONNACK (connections)
)

// latencyOrder returns the order in which the summary lists latencies.
func latencyOrder() []string {
	return []string{LatencyAck, LatencyDelivery, LatencyDeliverySameNode, LatencyDeliveryCrossNode, LatencyEcho,
		LatencyReceipt, LatencySendLag, LatencyConnect}
}

// Report is everything one run measured.
type Report struct {
	Tool        string            `json:"tool"`
	Workload    string            `json:"workload"`
	Broker      string            `json:"broker"` // comma-separated when several
	Protocol    int               `json:"protocol"`
	Started     time.Time         `json:"started"`
	Elapsed     float64           `json:"elapsed_s"` // connect to end of drain
	SendWindow  float64           `json:"send_window_s"`
	Interrupted bool              `json:"interrupted,omitempty"`
	Config      map[string]string `json:"config"` // the settings that shaped the run

	Messages    *Messages                  `json:"messages,omitempty"`
	Latency     map[string]latency.Summary `json:"latency,omitempty"`
	Accounting  *account.Result            `json:"accounting,omitempty"`
	Inboxes     *account.SeqResult         `json:"inboxes,omitempty"`  // dm, group: per-inbox seq check
	Receipts    *Receipts                  `json:"receipts,omitempty"` // dm, group
	Connections Connections                `json:"connections"`
	Memory      *Memory                    `json:"memory,omitempty"`
	Errors      map[string]int64           `json:"errors,omitempty"` // reason → count
	Series      []Point                    `json:"series,omitempty"`
	Warnings    []string                   `json:"warnings,omitempty"`
}

// Messages counts what happened to the messages of a run.
type Messages struct {
	QoS          int     `json:"qos"`
	Size         int     `json:"size_bytes"`
	Rate         float64 `json:"target_rate"` // per second
	Scheduled    int64   `json:"scheduled"`   // came due on the schedule
	Sent         int64   `json:"sent"`        // written to a connection
	Shed         int64   `json:"shed"`        // dropped by the load tester: backlog full
	Unsent       int64   `json:"unsent"`      // due but not yet sent when the run stopped
	SendFailed   int64   `json:"send_failed"` // the write itself failed (not connected, …)
	Acked        int64   `json:"acked"`       // PUBACK with success
	Refused      int64   `json:"refused"`     // PUBACK with an error reason code
	NoAck        int64   `json:"no_ack"`      // connection lost or run over before the PUBACK
	Delivered    int64   `json:"delivered"`   // first copies received
	Duplicates   int64   `json:"duplicates"`
	SendRate     float64 `json:"send_rate"`     // sent per second of the send window
	DeliveryRate float64 `json:"delivery_rate"` // delivered per second of the send window
	// Throughput is delivered per second from the start of sending to the
	// last arrival: what the broker got through, backlog included, when the
	// rate asked for is more than it can take.
	Throughput float64 `json:"throughput,omitempty"`
}

// Receipts counts the "delivered" receipts of a dm or group run.
type Receipts struct {
	Expected int64 `json:"expected"`          // accepted messages whose recipients (group: all of them) got them
	Received int64 `json:"received"`          // of those, receipts that came back (group: counting every member)
	Partial  int64 `json:"partial,omitempty"` // group: the others, reported delivered to some members only
	Unknown  int64 `json:"unknown"`           // receipts naming ids this run never saw
}

// Connections counts the connections of a run.
type Connections struct {
	Target      int64   `json:"target"`
	Established int64   `json:"established"`
	Failed      int64   `json:"failed"`
	Drops       int64   `json:"drops"`
	Reconnects  int64   `json:"reconnects"`
	RampSeconds float64 `json:"ramp_s,omitempty"` // first attempt to last CONNACK
}

// Memory is the broker's resident memory around the connection ramp, and the
// load tester's own.
type Memory struct {
	Source            string  `json:"source"` // "pid 1234" or a metrics URL
	BeforeBytes       int64   `json:"before_bytes"`
	AfterRampBytes    int64   `json:"after_ramp_bytes"`
	AfterHoldBytes    int64   `json:"after_hold_bytes,omitempty"`
	PerConnBytes      float64 `json:"per_conn_bytes"`
	SelfBeforeBytes   int64   `json:"self_before_bytes"`
	SelfAfterBytes    int64   `json:"self_after_bytes"`
	SelfPerConnBytes  float64 `json:"self_per_conn_bytes"`
	Error             string  `json:"error,omitempty"`
	SampledAfterRampS float64 `json:"sampled_after_ramp_s,omitempty"`
}

// Point is one second of the run.
type Point struct {
	T           float64         `json:"t_s"` // end of the interval, from the start of sending
	Sent        int64           `json:"sent"`
	Acked       int64           `json:"acked"`
	Delivered   int64           `json:"delivered"`
	Errors      int64           `json:"errors"`
	Connections int64           `json:"connections"`
	InFlight    int64           `json:"in_flight"`
	Ack         latency.Summary `json:"ack"`
	Delivery    latency.Summary `json:"delivery"`
	Connect     latency.Summary `json:"connect"`
}

// Lost returns how many expected deliveries went missing, by any count the
// report has.
func (r *Report) Lost() int64 {
	var n int64
	if r.Accounting != nil {
		n += r.Accounting.Lost
	}
	if r.Inboxes != nil {
		n = max(n, r.Inboxes.Gaps)
	}
	return n
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: encode json: %w", err)
	}
	return nil
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("report: decode json: %w", err)
	}
	return &r, nil
}

// WriteJSONFile writes the report to a file.
func (r *Report) WriteJSONFile(name string) error {
	return writeFile(name, r.WriteJSON)
}

func writeFile(name string, write func(io.Writer) error) (err error) {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("report: %w", cerr)
		}
	}()
	return write(f)
}
