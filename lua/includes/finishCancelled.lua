--[[
  Function to end a job as cancelled (it must already be out of pending, scheduled and active).
]]
--- @include "emitEvent"
--- @include "trimFinished"
local function finishCancelled(prefix, cfg, jobKey, jobId, jobType, now)
  rcall('HSET', jobKey, 'status', 'cancelled', 'finished_at', now, 'updated_at', now)
  rcall('HINCRBY', prefix .. 'stats', 'cancelled:' .. jobType, 1)
  trimFinished(prefix, prefix .. 'cancelled', jobKey, jobId, now, cfg.keepFailedMs, cfg.keepFailedMax)
  emitEvent(prefix .. 'events', cfg.eventsMaxLen, 'ev', 'cancelled', 'id', jobId)
end
