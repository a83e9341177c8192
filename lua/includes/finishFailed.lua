--[[
  Function to end a job in the dead-letter set (failed) after its last attempt or a failure marked
  not retryable.
]]
--- @include "emitEvent"
--- @include "trimFinished"
local function finishFailed(prefix, cfg, jobKey, jobId, jobType, attempt, err, now)
  rcall('HSET', jobKey, 'status', 'failed', 'finished_at', now, 'updated_at', now)
  rcall('HINCRBY', prefix .. 'stats', 'failed:' .. jobType, 1)
  trimFinished(prefix, prefix .. 'failed', jobKey, jobId, now, cfg.keepFailedMs, cfg.keepFailedMax)
  emitEvent(prefix .. 'events', cfg.eventsMaxLen, 'ev', 'failed', 'id', jobId, 'type', jobType,
    'error', err, 'final', 1, 'attempt', attempt)
end
