package statusstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/queue"
)

// Idempotency keys (draft-ietf-httpapi-idempotency-key-header): the first
// request with a key claims it with the fingerprint of its body and the id its
// job will have; later requests with the key either replay that job, or are
// refused when their body differs or the first is still being admitted.

// Claim is the state of an idempotency key after ClaimKey.
type Claim struct {
	// Claimed is true when this request owns the key: it must enqueue JobID,
	// then Settle (or Release on failure).
	Claimed bool
	// Fingerprint and JobID are those of the request that owns the key.
	Fingerprint string
	JobID       string
	// Pending is true while the owner has not settled.
	Pending bool
}

// claimScript claims an idempotency key or reports who holds it.
//
//	KEYS 1 idempotency record
//	ARGV 1 fingerprint; 2 job id; 3 pending ttl ms
//	returns {1} claimed, or {0, fingerprint, job id, state}
var claimScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'id', ARGV[2], 'state', 'pending')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1}
end
local f = redis.call('HMGET', KEYS[1], 'fp', 'id', 'state')
return {0, f[1] or '', f[2] or '', f[3] or ''}
`)

// pendingTTL bounds how long a claim stays pending if its owner dies before
// settling: after it, the key can be claimed again.
const pendingTTL = time.Minute

// ClaimKey claims (scope, key) for a request whose body has fingerprint and
// whose job will be jobID, or reports the request that holds it.
func (s *Store) ClaimKey(ctx context.Context, scope, key, fingerprint, jobID string) (Claim, error) {
	res, err := claimScript.Run(ctx, s.rdb, []string{queue.IdempotencyKey(scope, key)},
		fingerprint, jobID, pendingTTL.Milliseconds()).Slice()
	if err != nil {
		return Claim{}, fmt.Errorf("claim idempotency key: %w", err)
	}
	if n, _ := res[0].(int64); n == 1 {
		return Claim{Claimed: true, Fingerprint: fingerprint, JobID: jobID}, nil
	}
	str := func(v any) string { s, _ := v.(string); return s }
	return Claim{Fingerprint: str(res[1]), JobID: str(res[2]), Pending: str(res[3]) == "pending"}, nil
}

// SettleKey marks (scope, key) as answered; it is kept for ttl.
func (s *Store) SettleKey(ctx context.Context, scope, key string, ttl time.Duration) error {
	k := queue.IdempotencyKey(scope, key)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "state", "done")
		p.PExpire(ctx, k, ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("settle idempotency key: %w", err)
	}
	return nil
}

// ReleaseKey forgets (scope, key) after its owner failed to enqueue, so that
// the client's retry can claim it.
func (s *Store) ReleaseKey(ctx context.Context, scope, key string) error {
	return s.rdb.Del(ctx, queue.IdempotencyKey(scope, key)).Err()
}
