// Package plot draws simple line charts into a PNG with the standard image
// packages and a bitmap font: enough for a load test's latency and throughput
// over time, without a plotting library.
package plot

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Series is one line. Points with a NaN Y leave a gap.
type Series struct {
	Name  string
	Color Color
	X, Y  []float64
}

// Panel is one chart: a title, a unit for its Y axis, and lines.
type Panel struct {
	Title  string
	YLabel string // unit shown above the Y axis, e.g. "ms"
	Series []Series
}

// Color is an opaque colour as 0xRRGGBB.
type Color uint32

// RGBA returns the colour as a color.RGBA.
func (c Color) RGBA() color.RGBA {
	return color.RGBA{uint8(c >> 16), uint8(c >> 8), uint8(c), 0xff}
}

// Colors for series, distinguishable and printable.
const (
	Blue   Color = 0x1f77b4
	Orange Color = 0xff7f0e
	Green  Color = 0x2ca02c
	Red    Color = 0xd62728
	Purple Color = 0x9467bd
	Brown  Color = 0x8c564b
	Gray   Color = 0x7f7f7f

	black     Color = 0x000000
	gridColor Color = 0xe0e0e0
)

// Layout in pixels.
const (
	titleH   = 24
	padLeft  = 64
	padRight = 150 // room for the legend
	padTop   = 22  // panel title
	padBot   = 34  // x tick labels and axis name
)

// Render draws the panels stacked vertically under a title, sharing the X
// axis label xLabel.
func Render(width, height int, title, xLabel string, panels []Panel) (*image.RGBA, error) {
	if width < padLeft+padRight+50 || height < titleH+len(panels)*(padTop+padBot+30) {
		return nil, fmt.Errorf("plot: %dx%d is too small for %d panels", width, height, len(panels))
	}
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	text(img, 8, 16, title, black.RGBA())
	if len(panels) == 0 {
		return img, nil
	}
	// One time axis for all panels, so that they line up.
	xmax := 0.0
	for _, p := range panels {
		for _, s := range p.Series {
			for _, x := range s.X {
				if !math.IsNaN(x) && !math.IsInf(x, 0) {
					xmax = math.Max(xmax, x)
				}
			}
		}
	}
	if xmax <= 0 {
		xmax = 1
	}
	ph := (height - titleH) / len(panels)
	for i, p := range panels {
		top := titleH + i*ph
		drawPanel(img, image.Rect(0, top, width, top+ph), p, xLabel, xmax)
	}
	return img, nil
}

// WritePNG encodes img as PNG.
func WritePNG(w io.Writer, img image.Image) error {
	if err := png.Encode(w, img); err != nil {
		return fmt.Errorf("plot: encode png: %w", err)
	}
	return nil
}

func drawPanel(img *image.RGBA, r image.Rectangle, p Panel, xLabel string, xmax float64) {
	area := image.Rect(r.Min.X+padLeft, r.Min.Y+padTop, r.Max.X-padRight, r.Max.Y-padBot)
	text(img, area.Min.X, r.Min.Y+15, p.Title, black.RGBA())
	if p.YLabel != "" {
		text(img, r.Min.X+6, r.Min.Y+15, p.YLabel, Gray.RGBA())
	}

	ymax := 0.0
	for _, s := range p.Series {
		for i := range s.X {
			if i < len(s.Y) && !math.IsNaN(s.Y[i]) && !math.IsInf(s.Y[i], 0) {
				ymax = math.Max(ymax, s.Y[i])
			}
		}
	}
	ystep := niceStep(ymax / 5)
	if ymax <= 0 {
		ystep = 0.2
	}
	ytop := math.Ceil(ymax*1.05/ystep) * ystep // headroom so the top line stays visible
	if ytop <= 0 {
		ytop = ystep * 5
	}
	xstep := niceStep(xmax / 8)
	xtop := xmax

	px := func(x float64) int { return area.Min.X + int(math.Round(x/xtop*float64(area.Dx()))) }
	py := func(y float64) int { return area.Max.Y - int(math.Round(y/ytop*float64(area.Dy()))) }

	// Grid and tick labels.
	for y := 0.0; y <= ytop+ystep/2; y += ystep {
		yy := py(y)
		hline(img, area.Min.X, area.Max.X, yy, gridColor.RGBA())
		label := formatTick(y)
		text(img, area.Min.X-6-textWidth(label), yy+4, label, black.RGBA())
	}
	for x := 0.0; x <= xtop+xstep/1000; x += xstep {
		xx := px(x)
		vline(img, xx, area.Min.Y, area.Max.Y, gridColor.RGBA())
		label := formatTick(x)
		text(img, xx-textWidth(label)/2, area.Max.Y+15, label, black.RGBA())
	}
	if xLabel != "" {
		text(img, area.Max.X-textWidth(xLabel), area.Max.Y+29, xLabel, Gray.RGBA())
	}
	// Axes.
	hline(img, area.Min.X, area.Max.X, area.Max.Y, black.RGBA())
	vline(img, area.Min.X, area.Min.Y, area.Max.Y, black.RGBA())

	// Lines, clipped to the area.
	for _, s := range p.Series {
		havePrev := false
		var x0, y0 int
		for i := range s.X {
			if i >= len(s.Y) || math.IsNaN(s.Y[i]) || math.IsInf(s.Y[i], 0) {
				havePrev = false
				continue
			}
			x1, y1 := px(s.X[i]), py(math.Min(s.Y[i], ytop))
			if havePrev {
				line(img, area, x0, y0, x1, y1, s.Color.RGBA())
			} else {
				dot(img, area, x1, y1, s.Color.RGBA())
			}
			x0, y0, havePrev = x1, y1, true
		}
	}

	// Legend.
	ly := area.Min.Y + 4
	for _, s := range p.Series {
		for dx := 0; dx < 18; dx++ {
			dot(img, image.Rect(0, 0, img.Bounds().Dx(), img.Bounds().Dy()), area.Max.X+12+dx, ly, s.Color.RGBA())
		}
		text(img, area.Max.X+36, ly+4, s.Name, black.RGBA())
		ly += 16
	}
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	exp := math.Pow(10, math.Floor(math.Log10(v)))
	switch f := v / exp; {
	case f <= 1:
		return exp
	case f <= 2:
		return 2 * exp
	case f <= 5:
		return 5 * exp
	}
	return 10 * exp
}

func formatTick(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case a >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
}

func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string) int {
	return font.MeasureString(basicfont.Face7x13, s).Round()
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

// dot sets a 2×2 pixel block inside clip.
func dot(img *image.RGBA, clip image.Rectangle, x, y int, c color.RGBA) {
	for dy := 0; dy < 2; dy++ {
		for dx := 0; dx < 2; dx++ {
			if p := (image.Point{x + dx, y - dy}); p.In(clip) {
				img.SetRGBA(p.X, p.Y, c)
			}
		}
	}
}

// line draws a 2-pixel-wide line with Bresenham's algorithm.
func line(img *image.RGBA, clip image.Rectangle, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		dot(img, clip, x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}
