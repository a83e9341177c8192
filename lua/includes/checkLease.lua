--[[
  Function to check that a message about a job comes from its current lease holder: the job is
  active, held by this worker, at this attempt. Returns false, the job's type, its timeout_ms
  (false when it has none), its group (false when none; both for endLease) and its `children`
  flag (false when it has no children), or a status word to answer with: NOT_FOUND when the job
  does not exist, LEASE_LOST otherwise.
]]
local function checkLease(jobKey, workerId, attempt)
  local f = rcall('HMGET', jobKey, 'status', 'worker', 'attempts', 'type', 'timeout_ms', 'group', 'children')
  if not f[1] then
    return 'NOT_FOUND'
  end
  if f[1] ~= 'active' or f[2] ~= workerId or f[3] ~= attempt then
    return 'LEASE_LOST'
  end
  return false, f[4], f[5], f[6], f[7]
end
