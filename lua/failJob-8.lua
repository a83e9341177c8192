--[[
  Fail a job's attempt, from its current lease holder only. The error is kept for this attempt. While
  attempts remain and the failure is retryable, the job waits in the scheduled set for an
  exponential backoff with jitter: base * 2^(attempt-1), capped, then scaled into [1/2, 1] of itself
  by the caller's jitter value (so retries of many jobs spread out). With no attempts left, or a
  failure marked not retryable, it goes to the failed set (dead-letter). A job whose cancel was asked
  ends cancelled. Then up to n next jobs are claimed for the worker. A repeated failure by the same
  worker and attempt answers OK again and changes nothing.

  Input:
    KEYS[1] meta hash
    KEYS[2] active zset
    KEYS[3] scheduled zset
    KEYS[4] failed zset
    KEYS[5] cancelled zset
    KEYS[6] workers zset
    KEYS[7] stats hash
    KEYS[8] events stream

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] job id
    ARGV[4] worker id
    ARGV[5] attempt
    ARGV[6] error text
    ARGV[7] retry: "1" retryable, "0" not
    ARGV[8] backoff base in ms
    ARGV[9] backoff cap in ms
    ARGV[10] jitter, a number in [0, 1]
    ARGV[11] most next jobs to claim (0: none)
    ARGV[12] lease in ms for the next jobs

  Output:
    {"OK", status, run_at, count, id, type, priority, payload, attempt, ...}
      status: "scheduled" (will be retried at run_at), "pending" (retried at once, no backoff),
      "failed" (final) or "cancelled";
      run_at is 0 unless scheduled; then the next jobs, five values each
    {"NOT_FOUND"}    no such job
    {"LEASE_LOST"}   the job is not active under this worker and attempt

  Events:
    failed (error, final 0 with run_at, or final 1) or cancelled; assigned for each next job
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/checkLease"
--- @include "includes/endLease"
--- @include "includes/enqueuePending"
--- @include "includes/finishCancelled"
--- @include "includes/finishFailed"
--- @include "includes/touchWorker"
--- @include "includes/claimForWorker"
--- @include "includes/refreshWorkerState"

local metaKey, activeKey, scheduledKey, workersKey, statsKey, eventsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[6], KEYS[7], KEYS[8]
local prefix, jobId, workerId, attempt, err = ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local jobKey = prefix .. 'job:' .. jobId
local now = getTime(ARGV[2])
local doneBy = workerId .. '/' .. attempt

local refused = checkLease(jobKey, workerId, attempt)
if refused then
  -- a repeat of this attempt's fail is answered with the job's status now; a fail after this
  -- attempt's own completion is not a repeat
  local f = rcall('HMGET', jobKey, 'done_by', 'status', 'run_at')
  if f[1] == doneBy and f[2] ~= 'completed' then
    return {'OK', f[2], f[2] == 'scheduled' and tonumber(f[3]) or 0, 0}
  end
  return {refused}
end
local cfg = getQueueConfig(metaKey)
local f = rcall('HMGET', jobKey, 'max_attempts', 'cancel')
local jobType = endLease(prefix, activeKey, jobKey, jobId)
rcall('HSET', jobKey, 'error', err, 'error:' .. attempt, err, 'done_by', doneBy)
local status, runAt = 'failed', 0
if f[2] == '1' then
  status = 'cancelled'
  finishCancelled(prefix, cfg, jobKey, jobId, jobType, now)
elseif ARGV[7] == '1' and tonumber(attempt) < tonumber(f[1]) then
  status = 'scheduled'
  local delay = math.min(tonumber(ARGV[9]), tonumber(ARGV[8]) * 2 ^ (tonumber(attempt) - 1))
  runAt = now + math.floor(delay * (0.5 + tonumber(ARGV[10]) / 2))
  if runAt <= now then
    status, runAt = 'pending', 0
    enqueuePending(prefix, jobKey, jobId, jobType, tonumber(rcall('HGET', jobKey, 'priority')), now)
  else
    rcall('ZADD', scheduledKey, runAt, jobId)
    rcall('HSET', jobKey, 'status', 'scheduled', 'run_at', runAt, 'updated_at', now)
  end
  rcall('HINCRBY', statsKey, 'retried:' .. jobType, 1)
  local retryAt = {}
  if runAt > 0 then
    retryAt = {'run_at', runAt}
  end
  emitEvent(eventsKey, cfg.eventsMaxLen, 'ev', 'failed', 'id', jobId, 'type', jobType, 'error', err,
    'final', 0, 'attempt', attempt, unpack(retryAt))
else
  finishFailed(prefix, cfg, jobKey, jobId, jobType, attempt, err, now)
end
local jobs = {}
if touchWorker(prefix, workersKey, workerId, now) then
  jobs = claimForWorker(prefix, activeKey, eventsKey, cfg, workerId, now, tonumber(ARGV[12]), tonumber(ARGV[11]))
  refreshWorkerState(prefix, workerId)
end
return {'OK', status, runAt, #jobs / 5, unpack(jobs)}
