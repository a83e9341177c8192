--[[
  Function to give a pending job (already removed from its pending set) to a worker: the attempt
  number goes up by one and becomes the lease's fencing token. Returns the five fields a worker
  needs: id, type, priority, payload, attempt. `stats`: see countStat.
]]
--- @include "emitEvent"
--- @include "countStat"
local function activateJob(prefix, activeKey, stats, eventsKey, cfg, jobId, workerId, now, leaseMs)
  local jobKey = prefix .. 'job:' .. jobId
  -- read first, then one HSET with the new attempt: a script runs alone, so no HINCRBY is needed
  local f = rcall('HMGET', jobKey, 'type', 'priority', 'payload', 'attempts')
  local attempt = tonumber(f[4]) + 1
  local deadline = now + leaseMs
  rcall('HSET', jobKey, 'attempts', attempt, 'status', 'active', 'worker', workerId, 'started_at', now,
    'updated_at', now, 'progress', 0, 'message', '')
  rcall('ZADD', activeKey, deadline, jobId)
  rcall('SADD', prefix .. 'worker:' .. workerId .. ':jobs', jobId)
  countStat(stats, 'active:' .. f[1], 1)
  emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'assigned', 'id', jobId, 'type', f[1],
    'worker', workerId, 'attempt', attempt)
  return {jobId, f[1], tonumber(f[2]), f[3], attempt}
end
