--[[
  Function to record a finished job in its set (completed, failed or cancelled) and keep that set
  within its retention: the job hash expires after keepMs, and at most a few of the oldest ids over
  keepMax are removed per call, so the set converges without ever running a long script.
]]
local function trimFinished(prefix, setKey, jobKey, jobId, now, keepMs, keepMax)
  rcall('ZADD', setKey, now, jobId)
  rcall('PEXPIRE', jobKey, keepMs)
  local excess = rcall('ZCARD', setKey) - keepMax
  if excess > 0 then
    local old = rcall('ZPOPMIN', setKey, math.min(excess, 4))
    for i = 1, #old, 2 do
      rcall('DEL', prefix .. 'job:' .. old[i])
    end
  end
end
