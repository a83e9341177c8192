--[[
  Claim up to n of the best pending jobs for a worker: among the pending sets of the worker's job
  types, highest priority first, FIFO within a priority. Never more than the worker's free slots
  (concurrency minus the jobs it holds), nor more of a limited type than its limits allow
  (setTypeLimits); a draining worker gets nothing. Each claimed job is leased
  until now + lease_ms and its attempt number goes up by one (the lease's fencing token).

  Input:
    KEYS[1] meta hash
    KEYS[2] active zset
    KEYS[3] workers zset
    KEYS[4] stats hash
    KEYS[5] events stream
    KEYS[6] worker states hash
    KEYS[7] deadlines zset
    KEYS[8] expiries zset

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] worker id
    ARGV[4] lease in ms
    ARGV[5] most jobs to claim (never more than max_claim of the meta hash)

  Output:
    {"OK", count, id, type, priority, payload, attempt, ..., type, ms, ...}  five values per claimed
      job, then, for each type whose rate held jobs back, the type and the ms until its next token
    {"NO_WORKER"}  the worker is not live (see isWorkerLive): register again
    error reply "ERR_NO_CONFIG ..." when the meta hash lacks a setting (nothing written)

  Events:
    assigned (type, worker, attempt) for each claimed job, all in one entry
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/isWorkerLive"
--- @include "includes/claimForWorker"
--- @include "includes/refreshWorkerState"
--- @include "includes/flushStats"
--- @include "includes/emitJobEvents"

local metaKey, activeKey, workersKey, statsKey, eventsKey, statesKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local deadlinesKey, expiriesKey = KEYS[7], KEYS[8]
local prefix, workerId, leaseMs, maxJobs = ARGV[1], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
local now = getTime(ARGV[2])

if not isWorkerLive(prefix, workersKey, workerId, now) then
  return {'NO_WORKER'}
end
local counts = {}  -- the stats counters of this call, written once (countStat)
local assigned = {}  -- their events, one stream entry (emitJobEvents)
local jobs = claimForWorker(prefix, activeKey, deadlinesKey, expiriesKey, counts, assigned, cfg, workerId, now,
  leaseMs, maxJobs)
emitJobEvents(eventsKey, cfg.events_maxlen, 'assigned', assigned, 8)
flushStats(statsKey, counts)
if #jobs > 0 then
  refreshWorkerState(prefix, statesKey, statsKey, workerId)
end
local out = {'OK', #jobs / 5, unpack(jobs)}
for _, value in ipairs(cfg.rate_waits or {}) do
  out[#out + 1] = value
end
return out
