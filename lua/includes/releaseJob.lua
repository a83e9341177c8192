--[[
  Function to take an active job back from a worker that lost it (lease expired, worker gone,
  worker deregistered). The attempt it started counts: the job goes back to pending while attempts
  remain, else to failed, so a poison job that kills its workers ends in the dead-letter set instead
  of looping forever. A job whose cancel was asked ends cancelled. Returns the job's new status.
  `flowKeys`: see failChildren.
]]
--- @include "endLease"
--- @include "failAttempt"
local function releaseJob(prefix, activeKey, deadlinesKey, seqKey, failedKey, cancelledKey, statsKey,
                          eventsKey, cfg, jobId, reason, now, flowKeys)
  local jobKey = prefix .. 'job:' .. jobId
  local f = rcall('HMGET', jobKey, 'status', 'attempts', 'type', 'worker', 'timeout_ms', 'group')
  if f[1] ~= 'active' then
    rcall('ZREM', activeKey, jobId)
    return f[1] or 'missing'
  end
  local jobType = f[3]
  endLease(prefix, activeKey, deadlinesKey, statsKey, jobId, jobType, f[4], f[5], f[6], cfg)
  local attempt = tonumber(f[2])
  local err = reason .. ' (attempt ' .. attempt .. ')'
  return (failAttempt(prefix, seqKey, nil, failedKey, cancelledKey, statsKey, eventsKey, cfg, jobKey,
    jobId, jobType, attempt, err, true, 0, now, nil, flowKeys))
end
