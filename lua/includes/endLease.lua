--[[
  Function to take an active job off its lease: out of the active set, out of its worker's job set,
  and one fewer active job of its type. The caller has read the job's type and worker (with the
  lease check, or the status), so this reads nothing. `stats`: see countStat. The lease's deadline
  is only the job's score in the active set, so nothing in the job hash changes here. `timed`: the
  job has a timeout (its timeout_ms, read with the caller's HMGET), so its attempt's deadline
  leaves the deadlines zset; a job without one costs no call for it. `group` (read with the same
  HMGET; false: none): one fewer active job of its group, and a group its type's per-group limit
  had parked goes back into the line once it is under the limit (unparkGroup).
]]
--- @include "countStat"
--- @include "unparkGroup"
local function endLease(prefix, activeKey, deadlinesKey, stats, jobId, jobType, workerId, timed, group, cfg)
  rcall('ZREM', activeKey, jobId)
  if timed then
    rcall('ZREM', deadlinesKey, jobId)
  end
  if workerId then
    rcall('SREM', prefix .. 'worker:' .. workerId .. ':jobs', jobId)
  end
  countStat(stats, 'active:' .. jobType, -1)
  if group then
    local activeGroupsKey = prefix .. 'group_active:' .. jobType
    local active = rcall('HINCRBY', activeGroupsKey, group, -1)
    if active <= 0 then
      rcall('HDEL', activeGroupsKey, group)
    end
    local limit = cfg.limits and cfg.limits[jobType]
    if limit and limit.group_concurrency and active < limit.group_concurrency then
      unparkGroup(prefix, jobType, group)
    end
  end
end
