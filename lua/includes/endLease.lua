--[[
  Function to take an active job off its lease: out of the active set, out of its worker's job set,
  and one fewer active job of its type. The caller has read the job's type and worker (with the
  lease check, or the status), so this reads nothing. `stats`: see countStat. The lease's deadline
  is only the job's score in the active set, so nothing in the job hash changes here. `timed`: the
  job has a timeout (its timeout_ms, read with the caller's HMGET), so its attempt's deadline
  leaves the deadlines zset; a job without one costs no call for it.
]]
--- @include "countStat"
local function endLease(prefix, activeKey, deadlinesKey, stats, jobId, jobType, workerId, timed)
  rcall('ZREM', activeKey, jobId)
  if timed then
    rcall('ZREM', deadlinesKey, jobId)
  end
  if workerId then
    rcall('SREM', prefix .. 'worker:' .. workerId .. ':jobs', jobId)
  end
  countStat(stats, 'active:' .. jobType, -1)
end
