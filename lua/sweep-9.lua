--[[
  Periodic upkeep, safe to run from several hubs at once (each step re-checks state atomically):
  1. scheduled jobs that are due become pending;
  2. jobs whose lease expired are taken back: to pending while attempts remain, else to failed (the
     expired attempt counts, so a poison job cannot loop forever);
  3. workers whose liveness lapsed are removed and their jobs taken back the same way;
  4. finished jobs older than their retention are deleted.
  Each step handles at most `limit` items per call, so a backlog of any size never blocks Redis for
  long; `more` tells the caller to call again at once.

  Input:
    KEYS[1] meta hash
    KEYS[2] scheduled zset
    KEYS[3] active zset
    KEYS[4] workers zset
    KEYS[5] completed zset
    KEYS[6] failed zset
    KEYS[7] cancelled zset
    KEYS[8] stats hash
    KEYS[9] events stream

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] limit: most items of each kind handled in this call

  Output:
    {promoted, expired, workers_removed, trimmed, more}   more = 1 when a step hit its limit

  Events:
    pending for each promoted job; failed (final 0 or 1) or cancelled for each job taken back;
    worker (status "gone") for each removed worker
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/enqueuePending"
--- @include "includes/removeWorker"

local metaKey, scheduledKey, activeKey, workersKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local eventsKey = KEYS[9]
local prefix = ARGV[1]
local now = getTime(ARGV[2])
local limit = tonumber(ARGV[3])
local cfg = getQueueConfig(metaKey)
local more = 0

local due = rcall('ZRANGEBYSCORE', scheduledKey, '-inf', now, 'LIMIT', 0, limit)
for _, jobId in ipairs(due) do
  rcall('ZREM', scheduledKey, jobId)
  local jobKey = prefix .. 'job:' .. jobId
  local f = rcall('HMGET', jobKey, 'status', 'type', 'priority')
  if f[1] == 'scheduled' then
    enqueuePending(prefix, jobKey, jobId, f[2], tonumber(f[3]), now)
    emitEvent(eventsKey, cfg.eventsMaxLen, 'ev', 'pending', 'id', jobId, 'type', f[2])
  end
end
if #due == limit then more = 1 end

local expired = rcall('ZRANGEBYSCORE', activeKey, '-inf', now, 'LIMIT', 0, limit)
for _, jobId in ipairs(expired) do
  releaseJob(prefix, activeKey, cfg, jobId, 'lease expired', now)
end
if #expired == limit then more = 1 end

local dead = rcall('ZRANGEBYSCORE', workersKey, '-inf', now, 'LIMIT', 0, limit)
for _, workerId in ipairs(dead) do
  removeWorker(prefix, activeKey, workersKey, cfg, workerId, 'worker lost', now)
end
if #dead == limit then more = 1 end

local trimmed = 0
local retention = {
  {KEYS[5], cfg.keepCompletedMs}, {KEYS[6], cfg.keepFailedMs}, {KEYS[7], cfg.keepFailedMs},
}
for _, r in ipairs(retention) do
  local old = rcall('ZRANGEBYSCORE', r[1], '-inf', now - r[2], 'LIMIT', 0, limit)
  for _, jobId in ipairs(old) do
    rcall('DEL', prefix .. 'job:' .. jobId)
    rcall('ZREM', r[1], jobId)
  end
  trimmed = trimmed + #old
  if #old == limit then more = 1 end
end
return {#due, #expired, #dead, trimmed, more}
