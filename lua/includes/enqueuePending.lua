--[[
  Function to make a job pending: it takes the next sequence number, so jobs of one priority run in
  the order they became ready, and enters its type's pending set.
  Score = (1000 - priority) * 2^42 + seq: higher priority first, exact in a double below 2^53.
]]
local function enqueuePending(prefix, jobKey, jobId, jobType, priority, now)
  local seq = rcall('INCR', prefix .. 'seq')
  rcall('ZADD', prefix .. 'pending:' .. jobType, (1000 - priority) * 4398046511104 + seq, jobId)
  rcall('HSET', jobKey, 'status', 'pending', 'updated_at', now)
end
