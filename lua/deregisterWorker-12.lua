--[[
  Remove a worker that says goodbye. Jobs it still holds go back to pending (the attempt they
  started counts, as for any lost lease), so nothing it held is lost.

  Input:
    KEYS[1] meta hash
    KEYS[2] active zset
    KEYS[3] workers zset
    KEYS[4] seq counter
    KEYS[5] failed zset
    KEYS[6] cancelled zset
    KEYS[7] worker states hash
    KEYS[8] stats hash
    KEYS[9] events stream
    KEYS[10] deadlines zset
    KEYS[11] waiting zset
    KEYS[12] expiries zset

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] worker id

  Output:
    {"OK", released}   the number of jobs given back
    {"NO_WORKER"}      the worker is not live (see isWorkerLive)
    error reply "ERR_NO_CONFIG ..." when the meta hash lacks a setting (nothing written)

  Events:
    worker (status "gone"); failed (final 0 or 1) or cancelled for each released job; failed (final
    1) for each waiting child of a job that ends failed or cancelled
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/isWorkerLive"
--- @include "includes/removeWorker"

local metaKey, activeKey, workersKey, seqKey, failedKey, cancelledKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local statesKey, statsKey, eventsKey, deadlinesKey = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local waitingKey, expiriesKey = KEYS[11], KEYS[12]
local prefix, workerId = ARGV[1], ARGV[3]
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
local now = getTime(ARGV[2])
if not isWorkerLive(prefix, workersKey, workerId, now) then
  return {'NO_WORKER'}
end
return {'OK', removeWorker(prefix, activeKey, deadlinesKey, workersKey, seqKey, failedKey, cancelledKey,
  statesKey, statsKey, eventsKey, cfg, workerId, 'worker deregistered', now,
  {waiting = waitingKey, expiries = expiriesKey, failed = failedKey})}
