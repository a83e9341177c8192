--[[
  Function to end a job in the dead-letter set (failed) after its last attempt, a failure marked
  not retryable, or its expiry. `extra`: more fields of its `failed` event (see failAttempt), or
  an empty table. `children`: the job's `children` flag (read by the caller's HMGET): its waiting
  children fail too (failChildren; `flowKeys` names their keys).
]]
--- @include "failChildren"
--- @include "emitEvent"
--- @include "trimFinished"
local function finishFailed(prefix, failedKey, statsKey, eventsKey, cfg, jobKey, jobId, jobType, attempt, err, now,
                            extra, children, flowKeys)
  rcall('HSET', jobKey, 'status', 'failed', 'finished_at', now, 'updated_at', now)
  rcall('HINCRBY', statsKey, 'failed:' .. jobType, 1)
  trimFinished(prefix, failedKey, jobKey, jobId, now, cfg.keep_failed_ms, cfg.keep_failed_max, 4)
  emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'failed', 'id', jobId, 'type', jobType,
    'error', err, 'final', 1, 'attempt', attempt, unpack(extra))
  if children then
    failChildren(prefix, flowKeys, statsKey, eventsKey, cfg, jobId, 'failed', now)
  end
end
