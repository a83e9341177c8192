--[[
  Function to tell whether a worker is live: its liveness deadline (its score in the workers zset)
  is after now, and its hash has not expired. The one rule every script applies before acting for
  a worker. A worker whose deadline passed is not live even before the sweep removes it (and
  releases its jobs): its hash expires at that deadline on Redis's clock anyway, and the deadline
  says the same for a caller that passes its own now. Returns the worker's liveness in ms and its
  deadline when it is live (touchWorker needs both), false otherwise.
]]
local function isWorkerLive(prefix, workersKey, workerId, now)
  local deadline = rcall('ZSCORE', workersKey, workerId)
  if deadline == false then
    return false
  end
  deadline = tonumber(deadline)
  if deadline <= now then
    return false
  end
  -- every worker hash has liveness_ms (registerWorker): false here means the hash expired
  local liveness = rcall('HGET', prefix .. 'worker:' .. workerId, 'liveness_ms')
  if not liveness then
    return false
  end
  return tonumber(liveness), deadline
end
