--[[
  Remove a worker that says goodbye. Jobs it still holds go back to pending (the attempt they
  started counts, as for any lost lease), so nothing it held is lost.

  Input:
    KEYS[1] meta hash
    KEYS[2] active zset
    KEYS[3] workers zset
    KEYS[4] stats hash
    KEYS[5] events stream
    KEYS[6] worker states hash

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] worker id

  Output:
    {"OK", released}   the number of jobs given back
    {"NO_WORKER"}

  Events:
    worker (status "gone"); failed (final 0 or 1) or cancelled for each released job
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/removeWorker"

local metaKey, activeKey, workersKey = KEYS[1], KEYS[2], KEYS[3]
local prefix, workerId = ARGV[1], ARGV[3]
if not rcall('ZSCORE', workersKey, workerId) then
  return {'NO_WORKER'}
end
local now = getTime(ARGV[2])
return {'OK', removeWorker(prefix, activeKey, workersKey, getQueueConfig(metaKey), workerId,
  'worker deregistered', now)}
