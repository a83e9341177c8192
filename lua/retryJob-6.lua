--[[
  Retry a job that ended failed (dead-lettered) or cancelled: it becomes pending again, behind the
  jobs of its priority that are waiting already, with `extra` more attempts than it has used. Its
  attempt count goes on from where it was, so the error of every attempt stays on record and a
  worker still holding an old attempt can never report on the new one. A job in any other state is
  left unchanged.

  Input:
    KEYS[1] meta hash
    KEYS[2] seq counter
    KEYS[3] failed zset
    KEYS[4] cancelled zset
    KEYS[5] stats hash
    KEYS[6] events stream

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] job id
    ARGV[4] extra attempts, an integer from 1 to max_attempts of the meta hash
    ARGV[5] retry id, or "": a repeat of the last retry's id (its reply was lost, it was sent
            again) answers REPEATED and changes nothing, whatever the job's state: also when the
            run it started has failed again, which a repeat must not retry a second time

  Output:
    {"RETRIED"}              the job is pending again
    {"REPEATED", status}     a repeat of the last retry (same retry id): nothing changed
    {"NOT_RETRYABLE", status} pending, scheduled, active or completed: nothing changed
    {"NOT_FOUND"}
    error reply "ERR_BAD_ARG ..." or "ERR_NO_CONFIG ..." (nothing written)

  Events:
    pending (type): the job is pending again, as a due delayed job
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/reviveJob"

local metaKey, seqKey, failedKey, cancelledKey, statsKey, eventsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local prefix, jobId = ARGV[1], ARGV[3]
local extra = tonumber(ARGV[4])
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
if not extra or extra < 1 or extra > cfg.max_attempts or extra % 1 ~= 0 then
  return redis.error_reply('ERR_BAD_ARG extra attempts must be an integer from 1 to ' .. cfg.max_attempts)
end
local jobKey = prefix .. 'job:' .. jobId
local f = rcall('HMGET', jobKey, 'status', 'type', 'priority', 'attempts')
local status = f[1]
if not status then
  return {'NOT_FOUND'}
end
if ARGV[5] ~= '' and rcall('HGET', jobKey, 'retry_id') == ARGV[5] then
  return {'REPEATED', status}
end
if status ~= 'failed' and status ~= 'cancelled' then
  return {'NOT_RETRYABLE', status}
end
local now = getTime(ARGV[2])
reviveJob(prefix, seqKey, cfg, status == 'failed' and failedKey or cancelledKey, jobKey, jobId, f[2], f[3],
  f[4], extra, ARGV[5], now)
rcall('HINCRBY', statsKey, 'retried:' .. f[2], 1)
emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'pending', 'id', jobId, 'type', f[2])
return {'RETRIED'}
