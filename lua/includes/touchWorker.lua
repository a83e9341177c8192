--[[
  Function to refresh a worker's liveness after a message of its own. Returns false when the worker
  is not registered (or its record expired).
]]
local function touchWorker(prefix, workersKey, workerId, now)
  local workerKey = prefix .. 'worker:' .. workerId
  local ttl = tonumber(rcall('HGET', workerKey, 'liveness_ms'))
  if not ttl then
    return false
  end
  rcall('ZADD', workersKey, now + ttl, workerId)
  rcall('HSET', workerKey, 'last_seen', now)
  rcall('PEXPIRE', workerKey, ttl)
  return true
end
