package queue

import (
	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/api"
)

// prelude is prepended to every transition script. It expects the eight
// per-state index sets of the queue as KEYS[1..8], in api.States order, and
// provides:
//
//	setstate(job, id, to, now)  move a job between state sets and stamp it
//	readyscore(job, now)        the job's score in the ready set
const prelude = `
local S = {queued=1, scheduled=2, running=3, retrying=4, canceling=5, succeeded=6, failed=7, canceled=8}
local function setstate(job, id, to, now)
  local from = redis.call('HGET', job, 'state')
  if from and S[from] then redis.call('ZREM', KEYS[S[from]], id) end
  redis.call('ZADD', KEYS[S[to]], redis.call('HGET', job, 'created'), id)
  redis.call('HSET', job, 'state', to, 'updated', now)
  return from
end
local function readyscore(job, now)
  local p = tonumber(redis.call('HGET', job, 'prio') or '0') or 0
  return tonumber(now) - p * 1e13
end
`

func newScript(body string) *redis.Script { return redis.NewScript(prelude + body) }

// stateKeys returns the per-state index sets of queue q in prelude order.
var stateNames = api.States

func stateKeys(q string) []string {
	keys := make([]string, len(api.States), len(api.States)+8)
	for i, s := range api.States {
		keys[i] = StateKey(q, s)
	}
	return keys
}
