package scalesim

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Series is one line of a plot panel: a value per trace minute (NaN: none).
type Series struct {
	Name, Colour string
	Dashed       bool
	Values       []float64
}

// Panel is one controller's plot.
type Panel struct {
	Title  string
	Series []Series
}

// WriteSVG draws the panels one above the other on a shared time axis in
// hours, each point the mean of every `every` minutes (keeps the file
// small). Plain SVG, no dependencies.
func WriteSVG(out io.Writer, panels []Panel, every int) error {
	const width, panelH, left, right, top, gap = 960.0, 190.0, 50.0, 20.0, 30.0, 40.0
	every = max(every, 1)
	n, yMax := 0, 1.0
	for _, p := range panels {
		for _, s := range p.Series {
			n = max(n, len(s.Values))
			for _, v := range s.Values {
				if !math.IsNaN(v) {
					yMax = max(yMax, v)
				}
			}
		}
	}
	yMax = math.Ceil(yMax*1.1/5) * 5
	height := top + float64(len(panels))*(panelH+gap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	plotW := width - left - right
	x := func(m float64) float64 { return left + plotW*m/float64(max(n, 1)) }
	for i, p := range panels {
		y0 := top + float64(i)*(panelH+gap)
		y := func(v float64) float64 { return y0 + panelH - panelH*v/yMax }
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-weight="bold">%s</text>`+"\n", left, y0-6, p.Title)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", left, y0, plotW, panelH)
		for v := 0.0; v <= yMax; v += yMax / 5 {
			fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%.0f</text>`+"\n", left-4, y(v)+4, v)
		}
		for h := 0; h*60 <= n; h += 6 {
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#eee"/><text x="%.1f" y="%.0f" text-anchor="middle">%dh</text>`+"\n",
				x(float64(h*60)), x(float64(h*60)), y0, y0+panelH, x(float64(h*60)), y0+panelH+12, h)
		}
		lx := left + 220
		for _, s := range p.Series {
			var pts strings.Builder
			for m := 0; m < len(s.Values); m += every {
				sum, k := 0.0, 0
				for _, v := range s.Values[m:min(m+every, len(s.Values))] {
					if !math.IsNaN(v) {
						sum += v
						k++
					}
				}
				if k > 0 {
					fmt.Fprintf(&pts, "%.1f,%.1f ", x(float64(m)+float64(every)/2), y(sum/float64(k)))
				}
			}
			if pts.Len() == 0 {
				continue
			}
			dash := ""
			if s.Dashed {
				dash = ` stroke-dasharray="5,3"`
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.3"%s points="%s"/>`+"\n", s.Colour, dash, strings.TrimSpace(pts.String()))
			fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="%s" stroke-width="2"%s/><text x="%.0f" y="%.0f">%s</text>`+"\n",
				lx, lx+18, y0-10, y0-10, s.Colour, dash, lx+22, y0-6, s.Name)
			lx += 30 + 7*float64(len(s.Name))
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(out, b.String())
	return err
}
