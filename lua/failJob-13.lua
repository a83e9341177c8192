--[[
  Fail a job's attempt, from its current lease holder only. The error is kept for this attempt. While
  attempts remain and the failure is retryable, the job waits in the scheduled set for an
  exponential backoff with jitter: base * 2^(attempt-1), capped, then scaled into [1/2, 1] of itself
  by the caller's jitter value (so retries of many jobs spread out). With no attempts left, or a
  failure marked not retryable, it goes to the failed set (dead-letter). A job whose cancel was asked
  ends cancelled. A job that ends failed or cancelled fails its waiting children (failChildren),
  and theirs. Then up to n next jobs are claimed for the worker. A repeated failure by the same
  worker and attempt answers OK again and changes nothing.

  Input:
    KEYS[1] meta hash
    KEYS[2] active zset
    KEYS[3] scheduled zset
    KEYS[4] failed zset
    KEYS[5] cancelled zset
    KEYS[6] workers zset
    KEYS[7] seq counter
    KEYS[8] worker states hash
    KEYS[9] stats hash
    KEYS[10] events stream
    KEYS[11] deadlines zset
    KEYS[12] expiries zset
    KEYS[13] waiting zset

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
    ARGV[11] lease in ms for the next jobs
    ARGV[12] most next jobs to claim (0: none; never more than max_claim of the meta hash)

  Output:
    {"OK", status, run_at, count, id, type, priority, payload, attempt, ...}
      status: "scheduled" (will be retried at run_at), "pending" (retried at once, no backoff),
      "failed" (final) or "cancelled";
      run_at is 0 unless scheduled; then the next jobs, five values each
    {"NOT_FOUND"}    no such job
    {"LEASE_LOST"}   the job is not active under this worker and attempt
    error reply "ERR_NO_CONFIG ..." when the meta hash lacks a setting (nothing written)

  Events:
    failed (error, final 0 with run_at, or final 1) or cancelled; failed (final 1) for each waiting
    child that fails with it; assigned for the next jobs (one entry)
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/checkLease"
--- @include "includes/isRepeat"
--- @include "includes/endLease"
--- @include "includes/failAttempt"
--- @include "includes/touchWorker"
--- @include "includes/claimForWorker"
--- @include "includes/refreshWorkerState"
--- @include "includes/emitJobEvents"

local metaKey, activeKey, scheduledKey, failedKey, cancelledKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local workersKey, seqKey, statesKey, statsKey, eventsKey = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local deadlinesKey, expiriesKey, waitingKey = KEYS[11], KEYS[12], KEYS[13]
local prefix, jobId, workerId, attempt, err = ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local leaseMs, maxJobs = tonumber(ARGV[11]), tonumber(ARGV[12])
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
local jobKey = prefix .. 'job:' .. jobId
local now = getTime(ARGV[2])
local doneBy = workerId .. '/' .. attempt

local refused, jobType, timed, group = checkLease(jobKey, workerId, attempt)
if refused then
  if isRepeat(jobKey, doneBy, false) then
    -- answered with the job's status now, as the first fail was
    local f = rcall('HMGET', jobKey, 'status', 'run_at')
    return {'OK', f[1], f[1] == 'scheduled' and tonumber(f[2]) or 0, 0}
  end
  return {refused}
end
endLease(prefix, activeKey, deadlinesKey, statsKey, jobId, jobType, workerId, timed, group, cfg)
rcall('HSET', jobKey, 'done_by', doneBy)
local backoff = math.min(tonumber(ARGV[9]), tonumber(ARGV[8]) * 2 ^ (tonumber(attempt) - 1))
local runAt = now + math.floor(backoff * (0.5 + tonumber(ARGV[10]) / 2))
local status
status, runAt = failAttempt(prefix, seqKey, scheduledKey, failedKey, cancelledKey, statsKey, eventsKey,
  cfg, jobKey, jobId, jobType, attempt, err, ARGV[7] == '1', runAt, now, nil,
  {waiting = waitingKey, expiries = expiriesKey, failed = failedKey})
local jobs = {}
if touchWorker(prefix, workersKey, workerId, now) then
  local assigned = {}
  jobs = claimForWorker(prefix, activeKey, deadlinesKey, expiriesKey, statsKey, assigned, cfg, workerId, now,
    leaseMs, maxJobs)
  emitJobEvents(eventsKey, cfg.events_maxlen, 'assigned', assigned, 8)
  refreshWorkerState(prefix, statesKey, statsKey, workerId)
end
return {'OK', status, runAt, #jobs / 5, unpack(jobs)}
