package plot

import (
	"image/color"
	"math"
	"testing"
)

func TestNiceStep(t *testing.T) {
	for in, want := range map[float64]float64{0.03: 0.05, 0.2: 0.2, 0.7: 1, 1.5: 2, 3: 5, 7: 10, 4000: 5000, 0: 1} {
		if got := niceStep(in); math.Abs(got-want) > 1e-12 {
			t.Errorf("niceStep(%v) = %v, want %v", in, got, want)
		}
	}
	for in, want := range map[float64]string{0.5: "0.5", 2: "2", 15000: "15k", 2e6: "2M", 0.30000000000000004: "0.3"} {
		if got := formatTick(in); got != want {
			t.Errorf("formatTick(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestRender(t *testing.T) {
	x := []float64{0, 1, 2, 3}
	img, err := Render(400, 300, "title", "time (s)", []Panel{{
		Title: "p", YLabel: "ms",
		Series: []Series{{Name: "a", Color: Red, X: x, Y: []float64{1, math.NaN(), 3, 2}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if s := img.Bounds().Size(); s.X != 400 || s.Y != 300 {
		t.Fatalf("size %v", s)
	}
	// Some pixels carry the series colour.
	red := Red.RGBA()
	n := 0
	for y := 0; y < 300; y++ {
		for x := 0; x < 400; x++ {
			if img.At(x, y).(color.RGBA) == red {
				n++
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d pixels of the series colour", n)
	}
	if _, err := Render(100, 100, "", "", make([]Panel, 5)); err == nil {
		t.Error("Render accepted a too small image")
	}
}
