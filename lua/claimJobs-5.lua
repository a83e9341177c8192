--[[
  Claim up to n of the best pending jobs for a worker: among the pending sets of the worker's job
  types, highest priority first, FIFO within a priority. Never more than the worker's free slots
  (concurrency minus the jobs it holds); a draining worker gets nothing. Each claimed job is leased
  until now + lease_ms and its attempt number goes up by one (the lease's fencing token).

  Input:
    KEYS[1] meta hash
    KEYS[2] active zset
    KEYS[3] workers zset
    KEYS[4] stats hash
    KEYS[5] events stream

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] worker id
    ARGV[4] lease in ms
    ARGV[5] most jobs to claim

  Output:
    {"OK", count, id, type, priority, payload, attempt, ...}  five values per claimed job
    {"NO_WORKER"}  the worker is not registered or its liveness lapsed: register again

  Events:
    assigned (type, worker, attempt) for each claimed job
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/claimForWorker"
--- @include "includes/refreshWorkerState"

local metaKey, activeKey, workersKey, eventsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[5]
local prefix, workerId = ARGV[1], ARGV[3]
local now = getTime(ARGV[2])

local liveUntil = tonumber(rcall('ZSCORE', workersKey, workerId))
if not liveUntil or liveUntil < now or rcall('EXISTS', prefix .. 'worker:' .. workerId) == 0 then
  return {'NO_WORKER'}
end
local cfg = getQueueConfig(metaKey)
local jobs = claimForWorker(prefix, activeKey, eventsKey, cfg, workerId, now, tonumber(ARGV[4]), tonumber(ARGV[5]))
if #jobs > 0 then
  refreshWorkerState(prefix, workerId)
end
return {'OK', #jobs / 5, unpack(jobs)}
