--[[
  Function to end a job as cancelled (it must already be out of pending, scheduled, waiting and
  active). `children`: the job's `children` flag (read by the caller's HMGET): its waiting children
  fail (failChildren; `flowKeys` names their keys).
]]
--- @include "failChildren"
--- @include "emitEvent"
--- @include "trimFinished"
local function finishCancelled(prefix, cancelledKey, statsKey, eventsKey, cfg, jobKey, jobId, jobType, now,
                         children, flowKeys)
  rcall('HSET', jobKey, 'status', 'cancelled', 'finished_at', now, 'updated_at', now)
  rcall('HINCRBY', statsKey, 'cancelled:' .. jobType, 1)
  trimFinished(prefix, cancelledKey, jobKey, jobId, now, cfg.keep_failed_ms, cfg.keep_failed_max, 4)
  emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'cancelled', 'id', jobId, 'type', jobType)
  if children then
    failChildren(prefix, flowKeys, statsKey, eventsKey, cfg, jobId, 'cancelled', now)
  end
end
