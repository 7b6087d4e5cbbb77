package queue_test

import (
	"math/rand/v2"
	"regexp"
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
		{"not base32 (I)", "emails." + u[:25] + "I", "", false},
		{"not base32 (U)", "emails.U" + u[1:], "", false},
		{"lower case", "emails." + strings.ToLower(u), "", false},
		{"past the ULID range", "emails.8" + u[1:], "", false},
		{"punctuation", "emails." + u[:25] + "}", "", false},
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

func TestValidOrderingKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  string
		want bool
	}{
		{"word", "customer-42", true},
		{"single character", "x", true},
		{"braces and colons", "acct:{42}:x", true},
		{"spaces and slashes", "a b/c", true},
		{"200 characters", strings.Repeat("k", queue.MaxOrderingKey), true},
		{"200 two-byte characters", strings.Repeat("é", queue.MaxOrderingKey), true},
		{"201 characters", strings.Repeat("k", queue.MaxOrderingKey+1), false},
		{"empty", "", false},
		{"not UTF-8", "a\xffb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := queue.ValidOrderingKey(tt.key); got != tt.want {
				t.Errorf("ValidOrderingKey(%q) = %v, want %v", tt.key, got, tt.want)
			}
		})
	}
}

// hashTag returns the part of key Redis Cluster hashes: the text between the
// first "{" and the first "}" after it, when not empty; else the whole key.
func hashTag(key string) string {
	_, rest, ok := strings.Cut(key, "{")
	if !ok {
		return key
	}
	tag, _, ok := strings.Cut(rest, "}")
	if !ok || tag == "" {
		return key
	}
	return tag
}

func TestOrderKeysShareTheQueueSlot(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"", "k", "{other}", "}{", "a:{b}:c", "ordh:x", strings.Repeat("é", 200)} {
		h, l := queue.OrderHolderKey("mail", key), queue.OrderLaneKey("mail", key)
		if hashTag(h) != "mail" || hashTag(l) != "mail" {
			t.Errorf("ordering key %q: keys %q and %q hash on %q and %q, want the queue's tag mail",
				key, h, l, hashTag(h), hashTag(l))
		}
		if h == l {
			t.Errorf("ordering key %q: holder and lane are one key %q", key, h)
		}
	}
	// Two keys never share a holder or a lane.
	if queue.OrderHolderKey("mail", "a") == queue.OrderHolderKey("mail", "b") ||
		queue.OrderHolderKey("mail", "a") == queue.OrderHolderKey("post", "a") {
		t.Error("holder keys collide")
	}
}

// TestValidQueueNameMatchesPattern checks the byte loop against the pattern
// it implements, on strings built from the interesting bytes.
func TestValidQueueNameMatchesPattern(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	alphabet := []byte("az09_-A.Z é\x00")
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, rng.IntN(70))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if got, want := queue.ValidQueueName(string(b)), re.MatchString(string(b)); got != want {
			t.Fatalf("ValidQueueName(%q) = %v, the pattern says %v", b, got, want)
		}
	}
}
