package main

import (
	"math"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values func(i int) time.Duration // for i in [1, 10000]
		q      float64
		want   time.Duration
	}{
		{name: "uniform µs p50", values: func(i int) time.Duration { return time.Duration(i) * time.Microsecond }, q: 0.5, want: 5 * time.Millisecond},
		{name: "uniform µs p99", values: func(i int) time.Duration { return time.Duration(i) * time.Microsecond }, q: 0.99, want: 9900 * time.Microsecond},
		{name: "constant", values: func(int) time.Duration { return 1234567 }, q: 0.99, want: 1234567},
		{name: "tiny exact", values: func(i int) time.Duration { return time.Duration(i % 100) }, q: 0.5, want: 49},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var h histogram
			for i := 1; i <= 10000; i++ {
				h.record(tc.values(i))
			}
			got := h.quantile(tc.q)
			if rel := math.Abs(float64(got-tc.want)) / float64(tc.want); rel > 0.01 {
				t.Errorf("quantile(%v) = %v, want %v ±1%%", tc.q, got, tc.want)
			}
		})
	}
}

func TestHistogramBuckets(t *testing.T) {
	t.Parallel()
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 123456789, math.MaxInt64, math.MaxUint64} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d, out of range", v, i)
		}
		if mid := histMid(i); v >= histSub && math.Abs(float64(mid)-float64(v))/float64(v) > 1.0/histSub {
			t.Errorf("value %d lands in bucket %d with middle %d: more than 1/%d away", v, i, mid, histSub)
		}
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		xs   []float64
		want float64
	}{
		{name: "empty", xs: nil, want: 0},
		{name: "odd", xs: []float64{3, 1, 2}, want: 2},
		{name: "even", xs: []float64{4, 1, 3, 2}, want: 2.5},
	}
	for _, tc := range tests {
		if got := median(tc.xs); got != tc.want {
			t.Errorf("%s: median(%v) = %v, want %v", tc.name, tc.xs, got, tc.want)
		}
	}
}
