package queue_test

import (
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/offload-dev/offload/queue"
)

func TestValidQueueName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		queue string
		want  bool
	}{
		{"single letter", "a", true},
		{"single digit", "0", true},
		{"word", "emails", true},
		{"dash and underscore inside", "a-b_c", true},
		{"trailing dash", "a-", true},
		{"64 characters", strings.Repeat("q", 64), true},
		{"65 characters", strings.Repeat("q", 65), false},
		{"empty", "", false},
		{"leading dash", "-a", false},
		{"leading underscore", "_a", false},
		{"upper case", "Emails", false},
		{"dot (the id separator)", "a.b", false},
		{"braces (the hash tag)", "a{b}", false},
		{"colon (the key separator)", "a:b", false},
		{"space", "a b", false},
		{"trailing newline", "a\n", false},
		{"non-ASCII", "é", false},
		{"star", "a*", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := queue.ValidQueueName(tt.queue); got != tt.want {
				t.Errorf("ValidQueueName(%q) = %v, want %v", tt.queue, got, tt.want)
			}
		})
	}
}

func TestQueueOf(t *testing.T) {
	t.Parallel()
	const u = "01HZX3Y4Z5A6B7C8D9E0F1G2H3" // 26 characters
	tests := []struct {
		name   string
		id     string
		want   string
		wantOK bool
	}{
		{"valid", "emails." + u, "emails", true},
		{"valid with dash", "a-b." + u, "a-b", true},
		{"no separator", "emails" + u, "", false},
		{"empty", "", "", false},
		{"empty queue", "." + u, "", false},
		{"bad queue", "Emails." + u, "", false},
		{"short ulid", "emails." + u[:25], "", false},
		{"long ulid", "emails." + u + "0", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := queue.QueueOf(tt.id)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("QueueOf(%q) = %q, %v; want %q, %v", tt.id, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestNewIDRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Date(2031, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	q := queue.New(nil, queue.Options{Clock: func() time.Time { return now }})
	prev := ""
	for i := range 1000 {
		id := q.NewID("thumbs")
		name, ok := queue.QueueOf(id)
		if !ok || name != "thumbs" {
			t.Fatalf("QueueOf(NewID(thumbs) = %q) = %q, %v", id, name, ok)
		}
		u, err := ulid.ParseStrict(strings.TrimPrefix(id, "thumbs."))
		if err != nil {
			t.Fatalf("id %q: %v", id, err)
		}
		if got := ulid.Time(u.Time()); !got.Equal(now) {
			t.Fatalf("id %q carries time %v, want the clock's %v", id, got, now)
		}
		if id <= prev {
			t.Fatalf("id %d %q does not sort after %q", i, id, prev)
		}
		prev = id
	}
}
