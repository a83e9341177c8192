--[[
  Function to tell whether a worker is live: its liveness deadline (its score in the workers zset)
  is after now, and its hash has not expired. The one rule every script applies before acting for
  a worker. A worker whose deadline passed is not live even before the sweep removes it (and
  releases its jobs): its hash expires at that deadline on Redis's clock anyway, and the deadline
  says the same for a caller that passes its own now.
]]
local function isWorkerLive(prefix, workersKey, workerId, now)
  local deadline = rcall('ZSCORE', workersKey, workerId)
  return deadline ~= false and tonumber(deadline) > now
    and rcall('EXISTS', prefix .. 'worker:' .. workerId) == 1
end
