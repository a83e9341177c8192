--[[
  Function to make a job pending: it takes the next sequence number, so jobs of one priority run in
  the order they became ready, and enters its type's pending set.
  Score = (max_priority - priority) * 2^42 + seq: higher priority first, FIFO within a priority.
  A double is exact below 2^53, so this holds while 2 * max_priority + 1 <= 2^11 (max_priority at
  most 1023) and seq < 2^42; pending scores written under one max_priority are not comparable with
  those of another, so changing it needs a new data layout (empfast/keys.py LAYOUT_VERSION).
]]
local function enqueuePending(prefix, seqKey, cfg, jobKey, jobId, jobType, priority, now)
  local seq = rcall('INCR', seqKey)
  rcall('ZADD', prefix .. 'pending:' .. jobType, (cfg.max_priority - priority) * 4398046511104 + seq, jobId)
  rcall('HSET', jobKey, 'status', 'pending', 'updated_at', now)
end
