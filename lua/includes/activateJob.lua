--[[
  Function to give a pending job (already removed from its pending set) to a worker: the attempt
  number goes up by one and becomes the lease's fencing token. Returns the five fields a worker
  needs: id, type, priority, payload, attempt.
]]
--- @include "emitEvent"
local function activateJob(prefix, activeKey, statsKey, eventsKey, cfg, jobId, workerId, now, leaseMs)
  local jobKey = prefix .. 'job:' .. jobId
  local attempt = rcall('HINCRBY', jobKey, 'attempts', 1)
  local deadline = now + leaseMs
  rcall('HSET', jobKey, 'status', 'active', 'worker', workerId, 'lease_until', deadline,
    'started_at', now, 'updated_at', now, 'progress', 0, 'message', '')
  rcall('ZADD', activeKey, deadline, jobId)
  rcall('SADD', prefix .. 'worker:' .. workerId .. ':jobs', jobId)
  local f = rcall('HMGET', jobKey, 'type', 'priority', 'payload')
  rcall('HINCRBY', statsKey, 'active:' .. f[1], 1)
  emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'assigned', 'id', jobId, 'type', f[1],
    'worker', workerId, 'attempt', attempt)
  return {jobId, f[1], tonumber(f[2]), f[3], attempt}
end
