--[[
  Function to end a job as cancelled (it must already be out of pending, scheduled and active).
]]
--- @include "emitEvent"
--- @include "trimFinished"
local function finishCancelled(prefix, cancelledKey, statsKey, eventsKey, cfg, jobKey, jobId, jobType, now)
  rcall('HSET', jobKey, 'status', 'cancelled', 'finished_at', now, 'updated_at', now)
  rcall('HINCRBY', statsKey, 'cancelled:' .. jobType, 1)
  trimFinished(prefix, cancelledKey, jobKey, jobId, now, cfg.keep_failed_ms, cfg.keep_failed_max, 4)
  emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'cancelled', 'id', jobId, 'type', jobType)
end
