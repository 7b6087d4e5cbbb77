package queue

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
)

// Every Redis key Offload uses is built here, by pure functions. All keys of
// one queue, including every key of every job in it, carry the hash tag
// {queue}, so that each Lua script touches one Redis Cluster slot.
//
//	offload:queues                   set    names of every queue ever used
//	offload:{q}:ready                zset   runnable jobs, score = priority/time order
//	offload:{q}:scheduled            zset   jobs waiting for run_at or a retry backoff, score = due ms
//	offload:{q}:leased               zset   jobs held by a worker, score = lease deadline ms
//	offload:{q}:tokens               hash   job id -> fencing token of its current lease, and the
//	                                        marker field "~" while any lease is held
//	offload:{q}:seq                  string fencing token counter
//	offload:{q}:meta                 hash   queue settings (paused)
//	offload:{q}:st:{state}           zset   jobs in one state, score = created ms (each job in exactly one)
//	offload:{q}:expiring             zset   finished jobs, score = expiry ms
//	offload:{q}:job:{id}             hash   the job record
//	offload:{q}:job:{id}:errors      list   one JSON entry per failed attempt
//	offload:{q}:job:{id}:target      hash   the resource the job created (type, body)
//	offload:{q}:job:{id}:tomb        string the state of an expired job, with a TTL
//	offload:{q}:tput:{unix minute}   hash   jobs finished that minute (succeeded, failed), with a TTL
//	offload:{q}:ordh:<key>           string the id of the job holding ordering key <key>'s turn
//	offload:{q}:ordl:<key>           list   "<priority>:<id>" per job waiting for <key>'s turn, oldest first
//	offload:{q}:outbox               list   follow-up jobs staged by completions, JSON arrays of NewJob
//	offload:workers                  zset   live worker processes, score = last heartbeat ms
//	offload:worker:{id}              hash   one worker process's description, with a TTL
//
// An ordering key is scoped to its queue: the same key in two queues names two
// independent lanes. It may hold any characters, braces included: the first
// "{" of every queue key opens the queue's hash tag, and a queue name holds
// no braces, so a key never changes the slot. The holder key exists exactly
// while some job of the key is not finished; the lane exists while jobs wait
// behind the holder (Redis deletes an emptied list).
const prefix = "offload:"

// Pub/sub channels. Channels are not keys: scripts publish to them by the name
// passed in ARGV.
const (
	// ChannelWake carries a queue name when its ready set turns non-empty.
	ChannelWake = prefix + "wake"
	// ChannelCancel carries the id of a running job whose cancel was requested.
	ChannelCancel = prefix + "cancel"
	// ChannelDone carries the id of a job that reached a terminal state, or
	// the space-separated ids of a batch of jobs that did.
	ChannelDone = prefix + "done"
)

// ErrBadQueueName is returned for a queue name outside [a-z0-9_-]{1,64}.
var ErrBadQueueName = errors.New("queue name must match ^[a-z0-9][a-z0-9_-]{0,63}$")

// ValidQueueName reports whether name can be used as a queue name: it
// matches ^[a-z0-9][a-z0-9_-]{0,63}$ (checked byte by byte: it is on the
// path of every enqueue).
func ValidQueueName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// MaxOrderingKey is the longest ordering key, in characters.
const MaxOrderingKey = 200

// ErrBadOrderingKey is returned for an ordering key that is empty, longer
// than MaxOrderingKey characters or not UTF-8, and for an ordered job that
// also asks for a run_at (submission order and a schedule would conflict).
var ErrBadOrderingKey = errors.New("bad ordering key")

// ValidOrderingKey reports whether key can be used as an ordering key: 1 to
// MaxOrderingKey characters of UTF-8.
func ValidOrderingKey(key string) bool {
	return key != "" && utf8.ValidString(key) && utf8.RuneCountInString(key) <= MaxOrderingKey
}

// QueueOf returns the queue encoded in a job id ("{queue}.{ulid}"). It
// refuses an id whose ULID is not one that NewID makes: 26 characters of
// Crockford's base32 in upper case, within the ULID range.
func QueueOf(id string) (string, bool) {
	q, rest, ok := strings.Cut(id, ".")
	if !ok || !ValidQueueName(q) || len(rest) != ulid.EncodedSize || strings.ToUpper(rest) != rest {
		return "", false
	}
	if _, err := ulid.ParseStrict(rest); err != nil {
		return "", false
	}
	return q, true
}

func qk(q, suffix string) string { return prefix + "{" + q + "}:" + suffix }

// QueuesKey is the set of every queue name ever used.
func QueuesKey() string { return prefix + "queues" }

// ReadyKey is the sorted set of runnable jobs of queue q.
func ReadyKey(q string) string { return qk(q, "ready") }

// ScheduledKey is the sorted set of jobs of q waiting for a time.
func ScheduledKey(q string) string { return qk(q, "scheduled") }

// LeasedKey is the sorted set of jobs of q held by workers, by lease deadline.
func LeasedKey(q string) string { return qk(q, "leased") }

// TokensKey maps the leased jobs of q to their fencing tokens.
//
// While it holds any token it also holds the field TokensMarker, whose value
// is longer than Redis's hash-max-listpack-value (64 bytes by default): that
// keeps the hash a hash table. As a listpack (up to 128 fields by default,
// which a busy pool's leases fill) every lookup of a batch's tokens would
// scan it, comparing ids that share their first 18 bytes. The scripts that
// end leases delete the key once the marker is all it holds.
func TokensKey(q string) string { return qk(q, "tokens") }

// TokensMarker is the field of the tokens hash that keeps it a hash table
// (see TokensKey). No job id can equal it.
const TokensMarker = "~"

// tokensPad is the marker's value: longer than any hash-max-listpack-value
// an operator is likely to set.
var tokensPad = strings.Repeat("~", 256)

// SeqKey is the fencing token counter of q.
func SeqKey(q string) string { return qk(q, "seq") }

// MetaKey holds the settings of q.
func MetaKey(q string) string { return qk(q, "meta") }

// StateKey indexes the jobs of q in one state by creation time. Every job
// is in exactly one of its queue's state sets: together they index every job.
func StateKey(q, state string) string { return qk(q, "st:"+state) }

// ExpiringKey holds the finished jobs of q by expiry time.
func ExpiringKey(q string) string { return qk(q, "expiring") }

// JobKey is the record of job id in queue q.
func JobKey(q, id string) string { return qk(q, "job:"+id) }

// ErrorsKey lists the attempt errors of job id.
func ErrorsKey(q, id string) string { return qk(q, "job:"+id+":errors") }

// TargetKey holds the resource job id created.
func TargetKey(q, id string) string { return qk(q, "job:"+id+":target") }

// TombKey remembers an expired job for a while so that it answers 410.
func TombKey(q, id string) string { return qk(q, "job:"+id+":tomb") }

// ThroughputKey counts the jobs of q that finished in the minute starting at
// unix second minute.
func ThroughputKey(q string, minute int64) string {
	return qk(q, "tput:"+strconv.FormatInt(minute, 10))
}

// OrderHolderKey holds the id of the job of queue q whose turn it is among
// the jobs with ordering key key: the one job of the key that may be ready,
// running or waiting for a retry.
func OrderHolderKey(q, key string) string { return qk(q, "ordh:"+key) }

// OrderLaneKey lists the jobs of queue q with ordering key key that wait for
// their turn, oldest first, each as "<priority>:<id>".
func OrderLaneKey(q, key string) string { return qk(q, "ordl:"+key) }

// WorkersKey indexes live worker processes by last heartbeat.
func WorkersKey() string { return prefix + "workers" }

// WorkerKey describes worker process id.
func WorkerKey(id string) string { return prefix + "worker:" + id }

// IdempotencyKey records what POST /v1/jobs answered to one client's
// Idempotency-Key. scope identifies the client.
func IdempotencyKey(scope, key string) string { return prefix + "idem:" + scope + ":" + key }

// OutboxKey stages the follow-up jobs that completions of q's jobs created,
// until the relay enqueues them into their own queues.
func OutboxKey(q string) string { return qk(q, "outbox") }
