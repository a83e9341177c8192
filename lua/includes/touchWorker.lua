--[[
  Function to refresh a worker's liveness after a message of its own. Returns false when the worker
  is not live (see isWorkerLive): it must register again. A heartbeat (`always`) refreshes it every
  time; any other message only once a quarter of its liveness has passed since the last refresh, so
  a busy worker's completion batches do not each pay three writes for it (its deadline is then at
  least three quarters of its liveness away, and its heartbeats come every third).
]]
--- @include "isWorkerLive"
local function touchWorker(prefix, workersKey, workerId, now, always)
  local liveness, deadline = isWorkerLive(prefix, workersKey, workerId, now)
  if not liveness then
    return false
  end
  if always or deadline - now < liveness * 0.75 then
    local workerKey = prefix .. 'worker:' .. workerId
    rcall('ZADD', workersKey, now + liveness, workerId)
    rcall('HSET', workerKey, 'last_seen', now)
    rcall('PEXPIRE', workerKey, liveness)
  end
  return true
end
