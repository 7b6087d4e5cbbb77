package handlers

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/offload-dev/offload/api"
)

// TestNegotiateWait: Prefer: wait is capped at SyncWaitMax, also for a
// number too large for a time.Duration, and the wait in effect is reported
// in Preference-Applied.
func TestNegotiateWait(t *testing.T) {
	a := &service{cfg: Config{SyncWaitMax: 30 * time.Second}}
	for pref, want := range map[string]struct {
		wait    time.Duration
		applied string
	}{
		"wait=5":                     {5 * time.Second, "wait=5"},
		"wait=1e3":                   {30 * time.Second, "wait=30"},
		"wait=99999999999999999999":  {30 * time.Second, "wait=30"},
		"wait=0.25":                  {250 * time.Millisecond, "wait=0.25"},
		"wait=abc":                   {0, ""},
		"wait=-1":                    {0, ""},
		"respond-async, wait=100000": {30 * time.Second, "respond-async, wait=30"},
	} {
		r := httptest.NewRequest("POST", "/v1/jobs", nil)
		r.Header.Set("Prefer", pref)
		n, err := a.negotiate(r, api.KindInfo{Name: "sleep"})
		if err != nil {
			t.Fatalf("%s: %v", pref, err)
		}
		if applied := strings.Join(n.applied, ", "); n.wait != want.wait || applied != want.applied {
			t.Errorf("Prefer: %s: wait %v, Preference-Applied %q; want %v, %q", pref, n.wait, applied, want.wait, want.applied)
		}
	}
}
