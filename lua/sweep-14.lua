--[[
  Periodic upkeep, safe to run from several hubs at once (each step re-checks state atomically):
  1. waiting (pending, scheduled, or waiting for their parents) jobs past their expiry end failed
     with the error "expired", final (no retry);
  2. scheduled jobs that are due become pending;
  3. running attempts past their timeout fail with the error "timeout", as a failed attempt does
     (pending again at once while attempts remain, else failed); the failed event names the worker,
     so its hub tells it to stop;
  4. jobs whose lease expired are taken back: to pending while attempts remain, else to failed (the
     expired attempt counts, so a poison job cannot loop forever);
  5. workers whose liveness lapsed are removed and their jobs taken back the same way;
  6. finished jobs older than their retention are deleted.
  A job that ends failed or cancelled fails its waiting children ("dependency failed: <id> failed"),
  and theirs (failChildren). Each step handles at most `limit` items per call, so a backlog of any size never blocks Redis for
  long; `more` tells the caller to call again at once.

  Input:
    KEYS[1] meta hash
    KEYS[2] scheduled zset
    KEYS[3] active zset
    KEYS[4] workers zset
    KEYS[5] completed zset
    KEYS[6] failed zset
    KEYS[7] cancelled zset
    KEYS[8] seq counter
    KEYS[9] worker states hash
    KEYS[10] stats hash
    KEYS[11] events stream
    KEYS[12] deadlines zset
    KEYS[13] expiries zset
    KEYS[14] waiting zset

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] limit: most items of each kind handled in this call

  Output:
    {promoted, expired, workers_removed, trimmed, more, timed_out, expired_waiting}
      expired: leases; expired_waiting: jobs past their expiry; more = 1 when a step hit its limit
    error reply "ERR_NO_CONFIG ..." when the meta hash lacks a setting (nothing written)

  Events:
    failed (error "expired", final 1) for each expired job; pending for each promoted job;
    failed (error "timeout", final 0 or 1, worker) or cancelled for each timed-out attempt; failed
    (final 0 or 1) or cancelled for each job taken back; worker (status "gone") for each removed worker; failed
    (final 1, "dependency failed: ...") for each waiting child of a job that ends failed or cancelled
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/enqueuePending"
--- @include "includes/releaseJob"
--- @include "includes/removeWorker"
--- @include "includes/endLease"
--- @include "includes/failAttempt"
--- @include "includes/finishFailed"
--- @include "includes/leavePending"

local metaKey, scheduledKey, activeKey, workersKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local completedKey, failedKey, cancelledKey = KEYS[5], KEYS[6], KEYS[7]
local seqKey, statesKey, statsKey, eventsKey = KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local deadlinesKey, expiriesKey, waitingKey = KEYS[12], KEYS[13], KEYS[14]
local prefix = ARGV[1]
local limit = tonumber(ARGV[3])
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
local now = getTime(ARGV[2])
local more = 0
local flowKeys = {waiting = waitingKey, expiries = expiriesKey, failed = failedKey}

-- 1. expiries: only jobs that have one are in the set, and claiming a job takes it out
local lapsed = rcall('ZRANGEBYSCORE', expiriesKey, '-inf', now, 'LIMIT', 0, limit)
for _, jobId in ipairs(lapsed) do
  rcall('ZREM', expiriesKey, jobId)
  local jobKey = prefix .. 'job:' .. jobId
  local f = rcall('HMGET', jobKey, 'status', 'type', 'attempts', 'group', 'children')
  if f[1] == 'pending' or f[1] == 'scheduled' or f[1] == 'waiting' then
    if f[1] == 'waiting' then
      rcall('ZREM', waitingKey, jobId)
      rcall('HINCRBY', statsKey, 'waiting:' .. f[2], -1)
    elseif f[1] == 'pending' then
      leavePending(prefix, cfg, jobId, f[2], f[4])
    elseif rcall('ZREM', scheduledKey, jobId) == 1 then
      rcall('HINCRBY', statsKey, 'scheduled:' .. f[2], -1)
    end
    rcall('HSET', jobKey, 'error', 'expired')
    finishFailed(prefix, failedKey, statsKey, eventsKey, cfg, jobKey, jobId, f[2], f[3], 'expired', now, {},
      f[5], flowKeys)
  end
end
if #lapsed == limit then more = 1 end

local due = rcall('ZRANGEBYSCORE', scheduledKey, '-inf', now, 'LIMIT', 0, limit)
for _, jobId in ipairs(due) do
  rcall('ZREM', scheduledKey, jobId)
  local jobKey = prefix .. 'job:' .. jobId
  local f = rcall('HMGET', jobKey, 'status', 'type', 'priority', 'group')
  if f[1] == 'scheduled' then
    rcall('HINCRBY', statsKey, 'scheduled:' .. f[2], -1)
    enqueuePending(prefix, seqKey, cfg, jobKey, jobId, f[2], tonumber(f[3]), now, f[4])
    emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'pending', 'id', jobId, 'type', f[2])
  end
end
if #due == limit then more = 1 end

-- 3. timeouts: an entry is the deadline of the job's current attempt (activateJob adds it, endLease
-- removes it), checked again against the hash so a stale one can never fail a newer attempt
local timedOut = rcall('ZRANGEBYSCORE', deadlinesKey, '-inf', now, 'LIMIT', 0, limit)
for _, jobId in ipairs(timedOut) do
  local jobKey = prefix .. 'job:' .. jobId
  local f = rcall('HMGET', jobKey, 'status', 'attempts', 'type', 'worker', 'started_at', 'timeout_ms', 'group')
  if f[1] ~= 'active' or not f[6] then
    rcall('ZREM', deadlinesKey, jobId)
  elseif tonumber(f[5]) + tonumber(f[6]) <= now then
    endLease(prefix, activeKey, deadlinesKey, statsKey, jobId, f[3], f[4], true, f[7], cfg)
    failAttempt(prefix, seqKey, nil, failedKey, cancelledKey, statsKey, eventsKey, cfg, jobKey, jobId, f[3],
      f[2], 'timeout', true, 0, now, f[4], flowKeys)
  else
    rcall('ZADD', deadlinesKey, tonumber(f[5]) + tonumber(f[6]), jobId)
  end
end
if #timedOut == limit then more = 1 end

local expired = rcall('ZRANGEBYSCORE', activeKey, '-inf', now, 'LIMIT', 0, limit)
for _, jobId in ipairs(expired) do
  releaseJob(prefix, activeKey, deadlinesKey, seqKey, failedKey, cancelledKey, statsKey, eventsKey, cfg,
    jobId, 'lease expired', now, flowKeys)
end
if #expired == limit then more = 1 end

local dead = rcall('ZRANGEBYSCORE', workersKey, '-inf', now, 'LIMIT', 0, limit)
for _, workerId in ipairs(dead) do
  removeWorker(prefix, activeKey, deadlinesKey, workersKey, seqKey, failedKey, cancelledKey, statesKey,
    statsKey, eventsKey, cfg, workerId, 'worker lost', now, flowKeys)
end
if #dead == limit then more = 1 end

local trimmed = 0
local retention = {
  {completedKey, cfg.keep_completed_ms}, {failedKey, cfg.keep_failed_ms}, {cancelledKey, cfg.keep_failed_ms},
}
for _, r in ipairs(retention) do
  local old = rcall('ZRANGEBYSCORE', r[1], '-inf', now - r[2], 'LIMIT', 0, limit)
  for _, jobId in ipairs(old) do
    -- its log and children set go with it
    rcall('DEL', prefix .. 'job:' .. jobId, prefix .. 'logs:' .. jobId, prefix .. 'children:' .. jobId)
    rcall('ZREM', r[1], jobId)
  end
  trimmed = trimmed + #old
  if #old == limit then more = 1 end
end
return {#due, #expired, #dead, trimmed, more, #timedOut, #lapsed}
