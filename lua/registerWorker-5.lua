--[[
  Register a worker, or refresh one that reconnects with the same id: its leases are kept (it may
  still be running those jobs and will report them), its capabilities are replaced.

  Input:
    KEYS[1] meta hash
    KEYS[2] workers zset
    KEYS[3] stats hash
    KEYS[4] events stream
    KEYS[5] worker states hash

    ARGV[1] key prefix, "{queue}:"
    ARGV[2] now in ms, or "" for the Redis clock
    ARGV[3] worker id, 1 to max_worker_id_bytes bytes, not ending in ":jobs"
    ARGV[4] job types, a JSON array of strings of 1 to max_job_type_bytes bytes
    ARGV[5] concurrency, an integer from 0 to max_concurrency (0: offer mode, the hub pushes no jobs)
    ARGV[6] liveness in ms: without a heartbeat for this long the worker is gone
    ARGV[7] hub id (where the worker is connected)

  Output:
    {"OK", {job id, attempt, ...}}   the jobs this worker still holds
    error reply "ERR_BAD_ARG ..." for a bad worker id, job types, concurrency or liveness
    error reply "ERR_NO_CONFIG ..." when the meta hash lacks a setting (nothing written)
    (the limits are fields of the meta hash, see getQueueConfig; lengths are UTF-8 bytes)

  Events:
    worker (status "registered", hub = ARGV[7]): a hub holding another connection of this worker
    id closes it (one connection per worker id, across hubs)
]]
local rcall = redis.call
--- @include "includes/getTime"
--- @include "includes/getQueueConfig"
--- @include "includes/emitEvent"
--- @include "includes/setWorkerState"
--- @include "includes/refreshWorkerState"

local metaKey, workersKey, statsKey, eventsKey, statesKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prefix, workerId = ARGV[1], ARGV[3]
local concurrency, liveness = tonumber(ARGV[5]), tonumber(ARGV[6])
local cfg = getQueueConfig(metaKey)
if cfg.err then
  return cfg
end
-- Lua's # counts bytes, as Redis does: the limits are in UTF-8 bytes
if workerId == '' or #workerId > cfg.max_worker_id_bytes then
  return redis.error_reply('ERR_BAD_ARG worker_id must be 1 to ' .. cfg.max_worker_id_bytes .. ' bytes (UTF-8)')
end
-- the worker's job set is worker:<id>:jobs: a worker 'w:jobs' would have worker 'w''s set as its hash
if string.sub(workerId, -5) == ':jobs' then
  return redis.error_reply("ERR_BAD_ARG worker_id must not end in ':jobs'")
end
local typesError = 'ERR_BAD_ARG job_types must be a non-empty array of strings of 1 to '
  .. cfg.max_job_type_bytes .. ' bytes (UTF-8)'
local ok, types = pcall(cjson.decode, ARGV[4])
if not ok or type(types) ~= 'table' or #types == 0 then
  return redis.error_reply(typesError)
end
for _, t in ipairs(types) do
  if type(t) ~= 'string' or t == '' or #t > cfg.max_job_type_bytes then
    return redis.error_reply(typesError)
  end
end
if not concurrency or concurrency ~= math.floor(concurrency) or concurrency < 0
    or concurrency > cfg.max_concurrency then
  return redis.error_reply('ERR_BAD_ARG concurrency must be an integer from 0 to ' .. cfg.max_concurrency)
end
if not liveness or liveness <= 0 then
  return redis.error_reply('ERR_BAD_ARG liveness must be a positive number of ms')
end
local now = getTime(ARGV[2])
local workerKey = prefix .. 'worker:' .. workerId
rcall('HSET', workerKey, 'id', workerId, 'job_types', ARGV[4], 'concurrency', concurrency,
  'liveness_ms', liveness, 'hub', ARGV[7], 'registered_at', now, 'last_seen', now)
rcall('PEXPIRE', workerKey, liveness)
rcall('ZADD', workersKey, now + liveness, workerId)
-- a reconnect ends a previous draining: the worker says again what it wants
if rcall('HGET', statesKey, workerId) == 'draining' then
  setWorkerState(prefix, statesKey, statsKey, workerId, 'idle')
end
refreshWorkerState(prefix, statesKey, statsKey, workerId)
-- the hash may be new (the old one expired) while the state is unchanged
rcall('HSET', workerKey, 'status', rcall('HGET', statesKey, workerId))
emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'worker', 'id', workerId,
  'status', 'registered', 'hub', ARGV[7])
local held = {}
for _, jobId in ipairs(rcall('SMEMBERS', workerKey .. ':jobs')) do
  local f = rcall('HMGET', prefix .. 'job:' .. jobId, 'status', 'worker', 'attempts')
  if f[1] == 'active' and f[2] == workerId then
    held[#held + 1] = jobId
    held[#held + 1] = tonumber(f[3])
  else
    rcall('SREM', workerKey .. ':jobs', jobId)
  end
end
return {'OK', held}
