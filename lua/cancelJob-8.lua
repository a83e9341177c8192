--[[
  Cancel a job. A pending or scheduled job is cancelled at once. A running job gets a cancel request:
  the hub tells its worker, and the job ends cancelled when the worker fails it or loses its lease
  (a worker that completes it anyway wins: the result is kept). A finished job is left unchanged.
  A pending, scheduled or waiting (for its parents) job with an expiry leaves the expiries zset. A
  job cancelled at once, or later when its worker gives it up, fails its waiting children
  ("dependency failed: <id> cancelled"), and theirs.

  Input:
    KEYS[1] meta hash
    KEYS[2] scheduled zset
    KEYS[3] cancelled zset
    KEYS[4] stats hash
    KEYS[5] events stream
    KEYS[6] expiries zset
    KEYS[7] waiting zset
    KEYS[8] failed zset

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] job id

  Output:
    {"CANCELLED"}                  the job was pending, scheduled or waiting and is now cancelled
    {"CANCEL_REQUESTED", worker}   the job is running on that worker; it was asked to stop
    {"FINISHED", status}           completed, failed or cancelled already: nothing changed
    {"NOT_FOUND"}
    error reply "ERR_NO_CONFIG ..." when the meta hash lacks a setting (nothing written)

  Events:
    cancelled (type), then failed (final 1) for each waiting child that fails with it; or
    cancel_requested (worker, attempt, type)
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/finishCancelled"
--- @include "includes/leavePending"

local metaKey, scheduledKey, cancelledKey, statsKey, eventsKey, expiriesKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local waitingKey, failedKey = KEYS[7], KEYS[8]
local prefix, jobId = ARGV[1], ARGV[3]
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
local jobKey = prefix .. 'job:' .. jobId
local f = rcall('HMGET', jobKey, 'status', 'type', 'worker', 'attempts', 'expires_at', 'group', 'children')
local status = f[1]
if not status then
  return {'NOT_FOUND'}
end
local now = getTime(ARGV[2])
if status == 'pending' or status == 'scheduled' or status == 'waiting' then
  if status == 'waiting' then
    rcall('ZREM', waitingKey, jobId)
    rcall('HINCRBY', statsKey, 'waiting:' .. f[2], -1)
  else
    leavePending(prefix, cfg, jobId, f[2], f[6])
    if rcall('ZREM', scheduledKey, jobId) == 1 then
      rcall('HINCRBY', statsKey, 'scheduled:' .. f[2], -1)
    end
  end
  if f[5] then
    rcall('ZREM', expiriesKey, jobId)
  end
  finishCancelled(prefix, cancelledKey, statsKey, eventsKey, cfg, jobKey, jobId, f[2], now, f[7],
    {waiting = waitingKey, expiries = expiriesKey, failed = failedKey})
  return {'CANCELLED'}
end
if status == 'active' then
  if rcall('HGET', jobKey, 'cancel') ~= '1' then
    rcall('HSET', jobKey, 'cancel', 1, 'updated_at', now)
    emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'cancel_requested', 'id', jobId, 'worker', f[3],
      'attempt', f[4], 'type', f[2])
  end
  return {'CANCEL_REQUESTED', f[3]}
end
return {'FINISHED', status}
