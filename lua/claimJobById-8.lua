--[[
  Claim one named job (offer mode: the worker was told the job is available and asks for it). Of two
  workers racing for one job exactly one wins; the other is told the job is no longer pending. The
  job's type must be one the worker runs.

  Input:
    KEYS[1] meta hash
    KEYS[2] active zset
    KEYS[3] workers zset
    KEYS[4] stats hash
    KEYS[5] events stream
    KEYS[6] worker states hash
    KEYS[7] deadlines zset
    KEYS[8] expiries zset

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] worker id
    ARGV[4] lease in ms
    ARGV[5] job id

  Output:
    {"OK", 1, id, type, priority, payload, attempt}
    {"NOT_FOUND"}            no such job
    {"NOT_PENDING", status}  someone else claimed it, or it is scheduled or finished
    {"WRONG_TYPE", type}     the worker does not run this job type
    {"NO_WORKER"}            the worker is not live (see isWorkerLive): register again
    {"DRAINING"}             the worker said it takes no new jobs
    {"PAUSED", type}         the job's type is paused (setTypePaused): it stays pending
    {"LIMITED", type}        the job's type is at its concurrency or rate limit (setTypeLimits):
                             it stays pending
    error reply "ERR_NO_CONFIG ..." when the meta hash lacks a setting (nothing written)

  Events:
    assigned (type, worker, attempt)
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/isWorkerLive"
--- @include "includes/activateJob"
--- @include "includes/typeAllowance"
--- @include "includes/spendTokens"
--- @include "includes/refreshWorkerState"
--- @include "includes/emitJobEvents"
--- @include "includes/leavePending"

local metaKey, activeKey, workersKey, statsKey, eventsKey, statesKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local deadlinesKey, expiriesKey = KEYS[7], KEYS[8]
local prefix, workerId, leaseMs, jobId = ARGV[1], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
local now = getTime(ARGV[2])

if not isWorkerLive(prefix, workersKey, workerId, now) then
  return {'NO_WORKER'}
end
local w = rcall('HMGET', prefix .. 'worker:' .. workerId, 'job_types', 'status')
if w[2] == 'draining' then
  return {'DRAINING'}
end
local jobKey = prefix .. 'job:' .. jobId
local f = rcall('HMGET', jobKey, 'status', 'type', 'group')
if not f[1] then
  return {'NOT_FOUND'}
end
if f[1] ~= 'pending' then
  return {'NOT_PENDING', f[1]}
end
local runs = false
for _, jobType in ipairs(cjson.decode(w[1])) do
  if jobType == f[2] then
    runs = true
  end
end
if not runs then
  return {'WRONG_TYPE', f[2]}
end
for _, name in ipairs(cfg.paused) do
  if name == f[2] then
    return {'PAUSED', f[2]}
  end
end
local limit = cfg.limits and cfg.limits[f[2]]
local bucket
if limit then
  local allow
  allow, bucket = typeAllowance(prefix, statsKey, limit, f[2], now)
  if allow < 1 then
    return {'LIMITED', f[2]}
  end
  if limit.group_concurrency and f[3]
      and (tonumber(rcall('HGET', prefix .. 'group_active:' .. f[2], f[3])) or 0) >= limit.group_concurrency then
    return {'LIMITED', f[2]}
  end
end
leavePending(prefix, cfg, jobId, f[2], f[3])
local assigned = {}
local job = activateJob(prefix, activeKey, deadlinesKey, expiriesKey, statsKey, assigned, jobId, workerId,
  tostring(now), tostring(now + leaseMs))
if bucket then
  spendTokens(prefix, bucket, limit, f[2], 1, now)
end
emitJobEvents(eventsKey, cfg.events_maxlen, 'assigned', assigned, 8)
refreshWorkerState(prefix, statesKey, statsKey, workerId)
return {'OK', 1, unpack(job)}
