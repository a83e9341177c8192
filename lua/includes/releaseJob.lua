--[[
  Function to take an active job back from a worker that lost it (lease expired, worker gone,
  worker deregistered). The attempt it started counts: the job goes back to pending while attempts
  remain, else to failed, so a poison job that kills its workers ends in the dead-letter set instead
  of looping forever. A job whose cancel was asked ends cancelled. Returns the job's new status.
]]
--- @include "endLease"
--- @include "enqueuePending"
--- @include "finishCancelled"
--- @include "finishFailed"
local function releaseJob(prefix, activeKey, cfg, jobId, reason, now)
  local jobKey = prefix .. 'job:' .. jobId
  local f = rcall('HMGET', jobKey, 'status', 'attempts', 'max_attempts', 'priority', 'cancel')
  if f[1] ~= 'active' then
    rcall('ZREM', activeKey, jobId)
    return f[1] or 'missing'
  end
  local jobType = endLease(prefix, activeKey, jobKey, jobId)
  local attempt = tonumber(f[2])
  local err = reason .. ' (attempt ' .. attempt .. ')'
  rcall('HSET', jobKey, 'error', err, 'error:' .. attempt, err)
  if f[5] == '1' then
    finishCancelled(prefix, cfg, jobKey, jobId, jobType, now)
    return 'cancelled'
  end
  if attempt >= tonumber(f[3]) then
    finishFailed(prefix, cfg, jobKey, jobId, jobType, attempt, err, now)
    return 'failed'
  end
  enqueuePending(prefix, jobKey, jobId, jobType, tonumber(f[4]), now)
  rcall('HINCRBY', prefix .. 'stats', 'retried:' .. jobType, 1)
  emitEvent(prefix .. 'events', cfg.eventsMaxLen, 'ev', 'failed', 'id', jobId, 'type', jobType,
    'error', err, 'final', 0, 'attempt', attempt)
  return 'pending'
end
