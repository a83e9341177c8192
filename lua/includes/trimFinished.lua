--[[
  Function to record a finished job in its set (completed, failed or cancelled) and keep that set
  within its retention: the job hash expires after keepMs, and at most `trimAtMost` of the oldest
  ids over keepMax are removed (a batch passes 0 and trims once for all its jobs, see trimSet).
]]
--- @include "trimSet"
local function trimFinished(prefix, setKey, jobKey, jobId, now, keepMs, keepMax, trimAtMost)
  rcall('ZADD', setKey, now, jobId)
  rcall('PEXPIRE', jobKey, keepMs)
  trimSet(prefix, setKey, keepMax, trimAtMost)
end
