package queue

import (
	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/api"
)

// prelude is prepended to every transition script. A script that calls
// setstate names the eight per-state index sets of the queue as KEYS[1..8],
// in api.States order. The prelude provides:
//
//	setstate(job, id, to, now)  move a job between state sets and stamp it
//	readyscore(job, now)        the job's score in the ready set
//	laneentry(job, id)          the job's entry in its ordering key's lane
//	gate(job, id, okey, holder, lane)
//	                            let a runnable job with ordering key okey take
//	                            the key's turn (true: the caller makes it ready)
//	                            or wait in the key's lane (false)
//	untoken(tokens)             after leases ended: delete the tokens hash when
//	                            only its marker is left (TokensKey)
//	release(id, okey, holder, lane, ready, now, wake, queue)
//	                            end id's turn if it holds it: hand the turn to
//	                            the oldest job of the lane (made ready, with a
//	                            wake message if the ready set was empty; returns
//	                            true) or free the key
//
// Ordering keys: of the jobs of one queue with one key, only the holder (the
// id in the holder key) is ever ready, leased, running, canceling or waiting
// for a retry; the others are queued in the lane, in submission order, in no
// other set. A job with no key passes an empty okey and the holder and lane
// keys of the empty key: named in KEYS (same slot), never touched. Lane entries carry the job's
// priority ("<prio>:<id>") because release cannot name the job's record.
const prelude = `
local S = {queued=1, scheduled=2, running=3, retrying=4, canceling=5, succeeded=6, failed=7, canceled=8}
local function setstate(job, id, to, now)
  local from = redis.call('HGET', job, 'state')
  if from and S[from] then redis.call('ZREM', KEYS[S[from]], id) end
  redis.call('ZADD', KEYS[S[to]], redis.call('HGET', job, 'created'), id)
  redis.call('HSET', job, 'state', to, 'updated', now)
  return from
end
local function score(prio, now)
  return tonumber(now) - (tonumber(prio) or 0) * 1e13
end
local function readyscore(job, now)
  return score(redis.call('HGET', job, 'prio') or '0', now)
end
local function untoken(tokens)
  if redis.call('HLEN', tokens) == 1 and redis.call('HEXISTS', tokens, '` + TokensMarker + `') == 1 then
    redis.call('DEL', tokens)
  end
end
` + luaGate + `
local function release(id, okey, holder, lane, ready, now, wake, queue)
  if okey == '' or redis.call('GET', holder) ~= id then return false end
  local e = redis.call('LPOP', lane)
  if not e then
    redis.call('DEL', holder)
    return false
  end
  local prio, nid = string.match(e, '^(-?%d+):(.+)$')
  if not prio then prio, nid = '0', e end
  redis.call('SET', holder, nid)
  local empty = redis.call('ZCARD', ready) == 0
  redis.call('ZADD', ready, score(prio, now), nid)
  if empty then redis.call('PUBLISH', wake, queue) end
  return true
end
`

// luaGate is the part of the prelude that the enqueue script, which sets no
// state through setstate, includes alone: laneentry and gate. Every
// function a script defines costs it a closure per call, and the enqueue
// script is the hottest of all.
const luaGate = `
local function laneentry(job, id)
  return (redis.call('HGET', job, 'prio') or '0') .. ':' .. id
end
local function gate(job, id, okey, holder, lane)
  if okey == '' then return true end
  local h = redis.call('GET', holder)
  if h and h ~= id then
    redis.call('RPUSH', lane, laneentry(job, id))
    return false
  end
  redis.call('SET', holder, id)
  return true
end
`

func newScript(body string) *redis.Script { return redis.NewScript(prelude + body) }

// stateKeys returns the per-state index sets of queue q in prelude order.
var stateNames = api.States

func stateKeys(q string) []string {
	keys := make([]string, len(api.States), len(api.States)+12)
	for i, s := range api.States {
		keys[i] = StateKey(q, s)
	}
	return keys
}

// orderKeys returns the holder and lane keys of ordering key okey in queue q
// (those of key "" for a job without one: named, never touched).
func orderKeys(q, okey string) []string {
	return []string{OrderHolderKey(q, okey), OrderLaneKey(q, okey)}
}
