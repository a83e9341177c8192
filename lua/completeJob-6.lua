--[[
  Complete a job, from its current lease holder only, storing the result text as given; then claim
  up to n next jobs for the same worker in the same call, so a busy worker costs one round trip per
  job. A repeated completion by the same worker and attempt (a lost reply, re-sent) answers OK again
  and changes nothing.

  Input:
    KEYS[1] meta hash
    KEYS[2] active zset
    KEYS[3] completed zset
    KEYS[4] workers zset
    KEYS[5] stats hash
    KEYS[6] events stream

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] job id
    ARGV[4] worker id
    ARGV[5] attempt
    ARGV[6] result (JSON text, stored as is)
    ARGV[7] most next jobs to claim (0: none)
    ARGV[8] lease in ms for the next jobs

  Output:
    {"OK", count, id, type, priority, payload, attempt, ...}  the next jobs, five values each
    {"NOT_FOUND"}    no such job
    {"LEASE_LOST"}   the job is not active under this worker and attempt

  Events:
    completed (result, worker, attempt); assigned for each next job
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/checkLease"
--- @include "includes/endLease"
--- @include "includes/trimFinished"
--- @include "includes/touchWorker"
--- @include "includes/claimForWorker"
--- @include "includes/refreshWorkerState"

local metaKey, activeKey, completedKey, workersKey, statsKey, eventsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local prefix, jobId, workerId, attempt = ARGV[1], ARGV[3], ARGV[4], ARGV[5]
local jobKey = prefix .. 'job:' .. jobId
local now = getTime(ARGV[2])
local doneBy = workerId .. '/' .. attempt

local refused = checkLease(jobKey, workerId, attempt)
if refused then
  -- a repeat of this attempt's completion (its reply was lost) is answered as done; a complete
  -- after this attempt's own fail is not a repeat
  local f = rcall('HMGET', jobKey, 'done_by', 'status')
  if f[1] == doneBy and f[2] == 'completed' then
    return {'OK', 0}
  end
  return {refused}
end
local cfg = getQueueConfig(metaKey)
local jobType = endLease(prefix, activeKey, jobKey, jobId)
rcall('HSET', jobKey, 'status', 'completed', 'result', ARGV[6], 'progress', 100, 'done_by', doneBy,
  'finished_at', now, 'updated_at', now)
rcall('HINCRBY', statsKey, 'completed:' .. jobType, 1)
trimFinished(prefix, completedKey, jobKey, jobId, now, cfg.keepCompletedMs, cfg.keepCompletedMax)
emitEvent(eventsKey, cfg.eventsMaxLen, 'ev', 'completed', 'id', jobId, 'result', ARGV[6],
  'worker', workerId, 'attempt', attempt)
local jobs = {}
if touchWorker(prefix, workersKey, workerId, now) then
  jobs = claimForWorker(prefix, activeKey, eventsKey, cfg, workerId, now, tonumber(ARGV[8]), tonumber(ARGV[7]))
  refreshWorkerState(prefix, workerId)
end
return {'OK', #jobs / 5, unpack(jobs)}
