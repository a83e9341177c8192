--[[
  Function to tell whether a worker is live: in the workers zset (the sweep removes it from there,
  and releases its jobs, once its liveness deadline passed) and its hash not expired. The one rule
  every script applies before acting for a worker; the sweep alone judges a lapsed deadline, so a
  worker that beats again before the sweep saw it lapse lives on.
]]
local function isWorkerLive(prefix, workersKey, workerId)
  return rcall('ZSCORE', workersKey, workerId) and rcall('EXISTS', prefix .. 'worker:' .. workerId) == 1
end
