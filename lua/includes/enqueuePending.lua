--[[
  Function to make a job pending: it takes the next sequence number, so jobs of one priority run in
  the order they became ready, and enters its type's pending set (see pendingScore).
]]
--- @include "pendingScore"
local function enqueuePending(prefix, seqKey, cfg, jobKey, jobId, jobType, priority, now)
  local seq = rcall('INCR', seqKey)
  rcall('ZADD', prefix .. 'pending:' .. jobType, pendingScore(cfg, priority, seq), jobId)
  rcall('HSET', jobKey, 'status', 'pending', 'updated_at', now)
end
