--[[
  Function to refresh a worker's liveness after a message of its own. Returns false when the worker
  is not live (see isWorkerLive): it must register again.
]]
--- @include "isWorkerLive"
local function touchWorker(prefix, workersKey, workerId, now)
  if not isWorkerLive(prefix, workersKey, workerId, now) then
    return false
  end
  local workerKey = prefix .. 'worker:' .. workerId
  local ttl = tonumber(rcall('HGET', workerKey, 'liveness_ms'))
  rcall('ZADD', workersKey, now + ttl, workerId)
  rcall('HSET', workerKey, 'last_seen', now)
  rcall('PEXPIRE', workerKey, ttl)
  return true
end
