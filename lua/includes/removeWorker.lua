--[[
  Function to remove a worker: every job it still holds is released (see releaseJob), its records
  are deleted and monitors are told it is gone. Used by deregisterWorker and by the sweep.
  Returns the number of jobs released. `flowKeys`: see failChildren.
]]
--- @include "emitEvent"
--- @include "releaseJob"
--- @include "setWorkerState"
local function removeWorker(prefix, activeKey, deadlinesKey, workersKey, seqKey, failedKey, cancelledKey,
                            statesKey, statsKey, eventsKey, cfg, workerId, reason, now, flowKeys)
  local workerKey = prefix .. 'worker:' .. workerId
  local jobIds = rcall('SMEMBERS', workerKey .. ':jobs')
  for _, jobId in ipairs(jobIds) do
    if rcall('HGET', prefix .. 'job:' .. jobId, 'worker') == workerId then
      releaseJob(prefix, activeKey, deadlinesKey, seqKey, failedKey, cancelledKey, statsKey, eventsKey,
        cfg, jobId, reason, now, flowKeys)
    end
  end
  rcall('DEL', workerKey, workerKey .. ':jobs')
  rcall('ZREM', workersKey, workerId)
  setWorkerState(prefix, statesKey, statsKey, workerId, false)
  emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'worker', 'id', workerId, 'status', 'gone')
  return #jobIds
end
