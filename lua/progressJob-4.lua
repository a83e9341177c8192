--[[
  Record a job's progress, from its current lease holder only (job id + worker + attempt), and
  extend its lease: a worker that reports progress is alive.

  Input:
    KEYS[1] meta hash
    KEYS[2] active zset
    KEYS[3] workers zset
    KEYS[4] events stream

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] job id
    ARGV[4] worker id
    ARGV[5] attempt
    ARGV[6] progress, a number from 0 to 100
    ARGV[7] message (may be empty)
    ARGV[8] lease in ms

  Output:
    {"OK", cancel}   cancel = 1 when a cancel of this job was asked (the worker should stop)
    {"NOT_FOUND"}    no such job
    {"LEASE_LOST"}   the job is not active under this worker and attempt
    error reply "ERR_BAD_ARG progress ..." when progress is not within 0..100
    error reply "ERR_NO_CONFIG ..." when the meta hash lacks a setting (nothing written)

  Events:
    progress (progress, message, worker, attempt, type)
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/checkLease"
--- @include "includes/touchWorker"

local metaKey, activeKey, workersKey, eventsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, jobId, workerId, attempt = ARGV[1], ARGV[3], ARGV[4], ARGV[5]
local progress = tonumber(ARGV[6])
if not progress or progress < 0 or progress > 100 then
  return redis.error_reply('ERR_BAD_ARG progress must be a number from 0 to 100')
end
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
local jobKey = prefix .. 'job:' .. jobId
local refused, jobType = checkLease(jobKey, workerId, attempt)
if refused then
  return {refused}
end
local now = getTime(ARGV[2])
local deadline = now + tonumber(ARGV[8])
rcall('HSET', jobKey, 'progress', ARGV[6], 'message', ARGV[7], 'updated_at', now)
rcall('ZADD', activeKey, deadline, jobId)
touchWorker(prefix, workersKey, workerId, now)
emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'progress', 'id', jobId,
  'progress', ARGV[6], 'message', ARGV[7], 'worker', workerId, 'attempt', attempt, 'type', jobType)
return {'OK', rcall('HGET', jobKey, 'cancel') == '1' and 1 or 0}
