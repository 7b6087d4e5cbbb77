package web

import (
	"fmt"
	"math"

	"github.com/offload-dev/offload/api"
)

// chartMinutes is how many one-minute bars a throughput chart shows.
const chartMinutes = 15

// chart is a server-rendered bar chart of a queue's throughput: one bar per
// minute, oldest on the left, succeeded stacked under failed. Coordinates are
// in the SVG's viewBox units; CSS colours the bars.
type chart struct {
	W, H      int
	Bars      []bar
	Succeeded int    // in the whole window
	Failed    int    // in the whole window
	Peak      int    // the tallest bar, which fills the height
	Label     string // the chart's accessible description
}

type bar struct {
	X, W          float64
	OkY, OkH      float64
	BadY, BadH    float64
	Title         string // tooltip: the minute and its counts
	HasOk, HasBad bool
}

// throughputChart lays out tp (oldest first). Fewer than chartMinutes entries
// are padded with empty minutes on the left; more keep the newest.
func throughputChart(tp []api.Throughput) chart {
	const w, h, gap = 150, 36, 2.0
	if len(tp) > chartMinutes {
		tp = tp[len(tp)-chartMinutes:]
	}
	c := chart{W: w, H: h}
	for _, m := range tp {
		c.Succeeded += m.Succeeded
		c.Failed += m.Failed
		c.Peak = max(c.Peak, m.Succeeded+m.Failed)
	}
	slot := float64(w) / chartMinutes
	pad := chartMinutes - len(tp)
	usable := float64(h - 1) // keep the baseline visible
	for i := range chartMinutes {
		b := bar{X: float64(i)*slot + gap/2, W: slot - gap}
		if i >= pad {
			m := tp[i-pad]
			if c.Peak > 0 {
				b.OkH = usable * float64(m.Succeeded) / float64(c.Peak)
				b.BadH = usable * float64(m.Failed) / float64(c.Peak)
			}
			b.OkY = usable - b.OkH
			b.BadY = b.OkY - b.BadH
			b.HasOk, b.HasBad = m.Succeeded > 0, m.Failed > 0
			b.Title = fmt.Sprintf("%s: %d succeeded, %d failed", m.At.UTC().Format("15:04"), m.Succeeded, m.Failed)
		} else {
			b.OkY, b.BadY = usable, usable
			b.Title = "no data"
		}
		b.OkY, b.OkH, b.BadY, b.BadH = round2(b.OkY), round2(b.OkH), round2(b.BadY), round2(b.BadH)
		c.Bars = append(c.Bars, b)
	}
	c.Label = fmt.Sprintf("Jobs finished per minute over the last %d minutes: %d succeeded, %d failed",
		chartMinutes, c.Succeeded, c.Failed)
	return c
}

// perMinute is the mean rate of a window of n minutes.
func perMinute(total int, minutes int) string {
	if minutes <= 0 {
		return "0"
	}
	r := float64(total) / float64(minutes)
	if r >= 10 || r == float64(int(r)) {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

// round2 keeps two decimals: enough for a 36-unit-high chart, and short.
func round2(f float64) float64 { return math.Round(f*100) / 100 }
