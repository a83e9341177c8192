--[[
  Function to give a pending job (already removed from its pending set) to a worker: the attempt
  number goes up by one and becomes the lease's fencing token; the lease ends at `deadline` (ms, as
  text, like `now`: Redis would format a Lua number for every call). Its `assigned` event joins the
  caller's batch `events` (see emitJobEvents, width 8). Returns the five fields a worker needs: id,
  type, priority, payload, attempt. `stats`: see countStat. A job with a timeout gets its attempt's
  deadline in the deadlines zset (start + timeout_ms); a job with an expiry leaves the expiries
  zset (a running job does not expire); a job with a group counts in its group's active jobs
  (`{Q}:group_active:<type>`, for the per-group limit). The fields come with the HMGET it makes
  anyway, so a job without them costs no call more.
]]
--- @include "countStat"
local function activateJob(prefix, activeKey, deadlinesKey, expiriesKey, stats, events, jobId, workerId,
                           now, deadline)
  local jobKey = prefix .. 'job:' .. jobId
  -- read first, then one HSET with the new attempt: a script runs alone, so no HINCRBY is needed
  local f = rcall('HMGET', jobKey, 'type', 'priority', 'payload', 'attempts', 'timeout_ms', 'expires_at', 'group')
  local attempt = tostring(tonumber(f[4]) + 1)
  rcall('HSET', jobKey, 'attempts', attempt, 'status', 'active', 'worker', workerId, 'started_at', now,
    'updated_at', now, 'progress', '0', 'message', '')
  rcall('ZADD', activeKey, deadline, jobId)
  rcall('SADD', prefix .. 'worker:' .. workerId .. ':jobs', jobId)
  if f[5] then
    rcall('ZADD', deadlinesKey, tonumber(now) + tonumber(f[5]), jobId)
  end
  if f[6] then
    rcall('ZREM', expiriesKey, jobId)
  end
  if f[7] then  -- a job with a group: its group's active count (the per-group limit, groupedQueue)
    rcall('HINCRBY', prefix .. 'group_active:' .. f[1], f[7], 1)
  end
  countStat(stats, 'active:' .. f[1], 1)
  local n = #events
  events[n + 1], events[n + 2], events[n + 3], events[n + 4] = 'id', jobId, 'type', f[1]
  events[n + 5], events[n + 6], events[n + 7], events[n + 8] = 'worker', workerId, 'attempt', attempt
  return {jobId, f[1], f[2], f[3], attempt}
end
