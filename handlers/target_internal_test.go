package handlers

import (
	"testing"
	"time"
)

// TestTargetMaxAge: a created resource may be cached for an hour, never
// past the job's expiry (after which the server answers 410).
func TestTargetMaxAge(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		expires time.Time
		want    int
	}{
		{time.Time{}, 3600},
		{now.Add(24 * time.Hour), 3600},
		{now.Add(30 * time.Second), 30},
		{now.Add(1500 * time.Millisecond), 1},
		{now.Add(-time.Minute), 0},
	} {
		if got := targetMaxAge(c.expires, now); got != c.want {
			t.Errorf("expires %v: max-age %d, want %d", c.expires.Sub(now), got, c.want)
		}
	}
}
