--[[
  A worker says it is draining (take no new jobs, finish the ones it has) or ready again.

  Input:
    KEYS[1] meta hash
    KEYS[2] workers zset
    KEYS[3] stats hash
    KEYS[4] events stream

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] worker id
    ARGV[4] "draining" or "idle"

  Output:
    {"OK", status}   the worker's status now (idle, busy or draining)
    {"NO_WORKER"}
    error reply "ERR_BAD_ARG ..." for another status

  Events:
    worker (status "draining" or "idle") when it changed
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/touchWorker"
--- @include "includes/refreshWorkerState"

local metaKey, workersKey, eventsKey = KEYS[1], KEYS[2], KEYS[4]
local prefix, workerId, wanted = ARGV[1], ARGV[3], ARGV[4]
if wanted ~= 'draining' and wanted ~= 'idle' then
  return redis.error_reply('ERR_BAD_ARG status must be "idle" or "draining"')
end
local now = getTime(ARGV[2])
if not touchWorker(prefix, workersKey, workerId, now) then
  return {'NO_WORKER'}
end
local statesKey = prefix .. 'worker_states'
local before = rcall('HGET', statesKey, workerId)
if wanted == 'draining' then
  setWorkerState(prefix, workerId, 'draining')
elseif before == 'draining' then
  setWorkerState(prefix, workerId, 'idle')
  refreshWorkerState(prefix, workerId)
end
local after = rcall('HGET', statesKey, workerId)
if (before == 'draining') ~= (after == 'draining') then
  emitEvent(eventsKey, getQueueConfig(metaKey).eventsMaxLen, 'ev', 'worker', 'id', workerId,
    'status', wanted)
end
return {'OK', after}
