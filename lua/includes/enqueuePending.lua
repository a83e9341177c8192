--[[
  Function to make a job pending: it takes the next sequence number, so jobs of one priority run in
  the order they became ready, and enters its type's pending set (see pendingScore), and its
  group's when the type has groups (enterGroup; `group`: the job's group field, false: none).
]]
--- @include "pendingScore"
--- @include "enterGroup"
local function enqueuePending(prefix, seqKey, cfg, jobKey, jobId, jobType, priority, now, group)
  local seq = rcall('INCR', seqKey)
  local score = pendingScore(cfg, priority, seq)
  rcall('ZADD', prefix .. 'pending:' .. jobType, score, jobId)
  enterGroup(prefix, cfg, jobType, group, jobId, score, seq)
  rcall('HSET', jobKey, 'status', 'pending', 'updated_at', now)
end
