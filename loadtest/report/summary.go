package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/parleychat/parley/loadtest/latency"
)

// WriteSummary writes the report as tables for people. Any loss comes first
// and last, in capitals.
func (r *Report) WriteSummary(w io.Writer) error {
	var b strings.Builder
	r.writeLossBanner(&b)
	proto := "MQTT 5"
	if r.Protocol == 3 {
		proto = "MQTT 3.1.1"
	}
	fmt.Fprintf(&b, "parley-loadtest %s → %s (%s)  started %s  elapsed %.1fs",
		r.Workload, r.Broker, proto, r.Started.Local().Format("2006-01-02 15:04:05"), r.Elapsed)
	if r.SendWindow > 0 {
		fmt.Fprintf(&b, "  send window %.1fs", r.SendWindow)
	}
	if r.Interrupted {
		b.WriteString("  INTERRUPTED")
	}
	b.WriteString("\n")
	if len(r.Config) > 0 {
		keys := sortedKeys(r.Config)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, k+"="+r.Config[k])
		}
		fmt.Fprintf(&b, "  %s\n", strings.Join(parts, " "))
	}

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	c := r.Connections
	fmt.Fprintf(&b, "\nCONNECTIONS\n")
	fmt.Fprintf(tw, "target\testablished\tfailed\tdrops\treconnects\tramp s\t\n")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%.2f\t\n", c.Target, c.Established, c.Failed, c.Drops, c.Reconnects, c.RampSeconds)
	tw.Flush()

	if m := r.Messages; m != nil {
		fmt.Fprintf(&b, "\nMESSAGES  (QoS %d, %d B, target %.0f/s)\n", m.QoS, m.Size, m.Rate)
		fmt.Fprintf(tw, "scheduled\tsent\tshed\tunsent\tsend failed\tacked\trefused\tno ack\tdelivered\tduplicates\tsent/s\tdelivered/s\tthroughput/s\t\n")
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t\n",
			m.Scheduled, m.Sent, m.Shed, m.Unsent, m.SendFailed, m.Acked, m.Refused, m.NoAck, m.Delivered, m.Duplicates,
			m.SendRate, m.DeliveryRate, m.Throughput)
		tw.Flush()
	}

	if len(r.Latency) > 0 {
		fmt.Fprintf(&b, "\nLATENCY (ms, from the scheduled send time)\n")
		fmt.Fprintf(tw, "\tcount\tmin\tp50\tp90\tp99\tp99.9\tmax\tmean\t\n")
		for _, name := range latencyNames(r.Latency) {
			s := r.Latency[name]
			fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n",
				strings.ReplaceAll(name, "_", " "), s.Count, s.Min, s.P50, s.P90, s.P99, s.P999, s.Max, s.Mean)
		}
		tw.Flush()
	}

	if a := r.Accounting; a != nil {
		fmt.Fprintf(&b, "\nACCOUNTING  (every accepted message checked off at every receiver that should get it)\n")
		fmt.Fprintf(tw, "accepted\texpected\tdelivered\tLOST\tduplicates\tout of order\tin doubt\tin doubt delivered\tunexpected\t\n")
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", a.Accepted, a.Expected, a.Delivered, a.Lost,
			a.Duplicates, a.Reordered, a.InDoubt, a.InDoubtDelivered, a.Unexpected)
		tw.Flush()
	}
	if in := r.Inboxes; in != nil {
		fmt.Fprintf(&b, "\nINBOX SEQUENCES  (server seq per inbox and receiver, counted from the lowest seen)\n")
		fmt.Fprintf(tw, "streams\tentries\tGAPS\tduplicates\tout of order\t\n")
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t\n", in.Streams, in.Entries, in.Gaps, in.Dups, in.Reordered)
		tw.Flush()
	}
	if rc := r.Receipts; rc != nil {
		if r.Workload == "group" {
			fmt.Fprintf(&b, "\nDELIVERED RECEIPTS  (group: a receipt counting every other member)\n")
			fmt.Fprintf(tw, "expected\treceived\tmissing\tpartial only\tunknown ids\t\n")
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t\n", rc.Expected, rc.Received, rc.Expected-rc.Received, rc.Partial, rc.Unknown)
		} else {
			fmt.Fprintf(&b, "\nDELIVERED RECEIPTS\n")
			fmt.Fprintf(tw, "expected\treceived\tmissing\tunknown ids\t\n")
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t\n", rc.Expected, rc.Received, rc.Expected-rc.Received, rc.Unknown)
		}
		tw.Flush()
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(&b, "\nMEMORY  (broker: %s)\n", m.Source)
		if m.Error != "" {
			fmt.Fprintf(&b, "  error: %s\n", m.Error)
		}
		fmt.Fprintf(tw, "broker before\tafter ramp\tafter hold\tper connection\ttester per connection\t\n")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", bytesStr(float64(m.BeforeBytes)), bytesStr(float64(m.AfterRampBytes)),
			bytesStr(float64(m.AfterHoldBytes)), bytesStr(m.PerConnBytes), bytesStr(m.SelfPerConnBytes))
		tw.Flush()
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "\nERRORS\n")
		for _, k := range sortedKeys(r.Errors) {
			fmt.Fprintf(&b, "  %10d  %s\n", r.Errors[k], k)
		}
	}
	for _, wn := range r.Warnings {
		fmt.Fprintf(&b, "\nWARNING: %s\n", wn)
	}
	r.writeLossBanner(&b)
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("report: write summary: %w", err)
	}
	return nil
}

func (r *Report) writeLossBanner(b *strings.Builder) {
	a := r.Accounting
	var lines []string
	if a != nil && a.Lost > 0 {
		pct := 100 * float64(a.Lost) / float64(max(a.Expected, 1))
		lines = append(lines, fmt.Sprintf("MESSAGE LOSS: %d of %d expected deliveries never arrived (%.4f%%)", a.Lost, a.Expected, pct))
		for i, l := range a.LostSamples {
			if i == 5 {
				lines = append(lines, fmt.Sprintf("  … and %d more", a.Lost-5))
				break
			}
			lines = append(lines, fmt.Sprintf("  e.g. sender %d seq %d → receiver %d", l.Sender, l.Seq, l.Receiver))
		}
		if r.Messages != nil && r.Messages.QoS == 0 {
			lines = append(lines, "  (QoS 0 permits loss; it is counted all the same)")
		}
	}
	if in := r.Inboxes; in != nil && in.Gaps > 0 {
		lines = append(lines, fmt.Sprintf("INBOX GAPS: %d sequence numbers missing across %d inbox streams", in.Gaps, in.Streams))
	}
	if len(lines) == 0 {
		return
	}
	bar := strings.Repeat("!", 78)
	b.WriteString(bar + "\n")
	for _, l := range lines {
		b.WriteString("!!! " + l + "\n")
	}
	b.WriteString(bar + "\n")
}

func latencyNames(m map[string]latency.Summary) []string {
	var names []string
	seen := make(map[string]bool)
	for _, n := range latencyOrder() {
		if _, ok := m[n]; ok {
			names = append(names, n)
			seen[n] = true
		}
	}
	var rest []string
	for n := range m {
		if !seen[n] {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(names, rest...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func bytesStr(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}
