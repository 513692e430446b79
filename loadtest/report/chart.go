package report

import (
	"fmt"
	"image"
	"io"
	"math"

	"github.com/parleychat/parley/loadtest/latency"
	"github.com/parleychat/parley/loadtest/plot"
)

// Default chart size in pixels.
const (
	DefaultPlotWidth  = 1000
	DefaultPlotHeight = 700
)

// Chart draws the run over time: latency percentiles and throughput for the
// message workloads, connections and connect latency for the connections
// workload.
func (r *Report) Chart(width, height int) (image.Image, error) {
	n := len(r.Series)
	t := make([]float64, n)
	for i, p := range r.Series {
		t[i] = p.T
	}
	rate := func(get func(Point) int64) []float64 {
		ys := make([]float64, n)
		prev := 0.0
		for i, p := range r.Series {
			dt := p.T - prev
			prev = p.T
			if dt <= 0 {
				ys[i] = math.NaN()
				continue
			}
			ys[i] = float64(get(p)) / dt
		}
		return ys
	}
	pct := func(get func(Point) latency.Summary, q func(latency.Summary) float64) []float64 {
		ys := make([]float64, n)
		for i, p := range r.Series {
			s := get(p)
			if s.Count == 0 {
				ys[i] = math.NaN()
				continue
			}
			ys[i] = q(s)
		}
		return ys
	}
	percentiles := func(title string, get func(Point) latency.Summary) plot.Panel {
		return plot.Panel{Title: title, YLabel: "ms", Series: []plot.Series{
			{Name: "p50", Color: plot.Blue, X: t, Y: pct(get, func(s latency.Summary) float64 { return s.P50 })},
			{Name: "p90", Color: plot.Green, X: t, Y: pct(get, func(s latency.Summary) float64 { return s.P90 })},
			{Name: "p99", Color: plot.Orange, X: t, Y: pct(get, func(s latency.Summary) float64 { return s.P99 })},
			{Name: "p99.9", Color: plot.Red, X: t, Y: pct(get, func(s latency.Summary) float64 { return s.P999 })},
		}}
	}

	var panels []plot.Panel
	if r.Messages == nil {
		conns := make([]float64, n)
		for i, p := range r.Series {
			conns[i] = float64(p.Connections)
		}
		panels = []plot.Panel{
			{Title: "open connections", YLabel: "conns", Series: []plot.Series{{Name: "connections", Color: plot.Blue, X: t, Y: conns}}},
			percentiles("connect latency (scheduled attempt to CONNACK)", func(p Point) latency.Summary { return p.Connect }),
		}
	} else {
		var delivered int64
		for _, p := range r.Series {
			delivered += p.Delivered
		}
		if delivered > 0 {
			panels = append(panels, percentiles("publish to delivery latency", func(p Point) latency.Summary { return p.Delivery }))
		}
		if r.Messages.QoS > 0 {
			panels = append(panels, percentiles("publish to PUBACK latency", func(p Point) latency.Summary { return p.Ack }))
		}
		panels = append(panels, plot.Panel{Title: "throughput", YLabel: "msg/s", Series: []plot.Series{
			{Name: "sent", Color: plot.Blue, X: t, Y: rate(func(p Point) int64 { return p.Sent })},
			{Name: "acked", Color: plot.Green, X: t, Y: rate(func(p Point) int64 { return p.Acked })},
			{Name: "delivered", Color: plot.Orange, X: t, Y: rate(func(p Point) int64 { return p.Delivered })},
			{Name: "errors", Color: plot.Red, X: t, Y: rate(func(p Point) int64 { return p.Errors })},
		}})
	}
	title := fmt.Sprintf("parley-loadtest %s -> %s   %s", r.Workload, r.Broker, r.Started.Local().Format("2006-01-02 15:04:05"))
	return plot.Render(width, height, title, "time (s)", panels)
}

// WritePlot draws the chart and writes it as PNG.
func (r *Report) WritePlot(w io.Writer, width, height int) error {
	img, err := r.Chart(width, height)
	if err != nil {
		return err
	}
	return plot.WritePNG(w, img)
}

// WritePlotFile writes the chart to a PNG file.
func (r *Report) WritePlotFile(name string, width, height int) error {
	return writeFile(name, func(w io.Writer) error { return r.WritePlot(w, width, height) })
}
