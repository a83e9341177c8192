--[[
  A worker says it is draining (take no new jobs, finish the ones it has) or ready again.

  Input:
    KEYS[1] meta hash
    KEYS[2] workers zset
    KEYS[3] stats hash
    KEYS[4] events stream
    KEYS[5] worker states hash

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] worker id
    ARGV[4] "draining" or "idle"

  Output:
    {"OK", status}   the worker's status now (idle, busy or draining)
    {"NO_WORKER"}    the worker is not live (see isWorkerLive): register again
    error reply "ERR_BAD_ARG ..." for another status
    error reply "ERR_NO_CONFIG ..." when the meta hash lacks a setting (nothing written)

  Events:
    worker (status "draining" or "idle") when it changed
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/touchWorker"
--- @include "includes/setWorkerState"
--- @include "includes/refreshWorkerState"

local metaKey, workersKey, statsKey, eventsKey, statesKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prefix, workerId, wanted = ARGV[1], ARGV[3], ARGV[4]
if wanted ~= 'draining' and wanted ~= 'idle' then
  return redis.error_reply('ERR_BAD_ARG status must be "idle" or "draining"')
end
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
local now = getTime(ARGV[2])
if not touchWorker(prefix, workersKey, workerId, now, true) then
  return {'NO_WORKER'}
end
local before = rcall('HGET', statesKey, workerId)
if wanted == 'draining' then
  setWorkerState(prefix, statesKey, statsKey, workerId, 'draining')
elseif before == 'draining' then
  setWorkerState(prefix, statesKey, statsKey, workerId, 'idle')
  refreshWorkerState(prefix, statesKey, statsKey, workerId)
end
local after = rcall('HGET', statesKey, workerId)
if (before == 'draining') ~= (after == 'draining') then
  emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'worker', 'id', workerId, 'status', wanted)
end
return {'OK', after}
