--[[
  Function to end a job's attempt that failed, whether its worker failed it (failJob) or lost it
  (releaseJob); the job must already be off its lease (endLease). The error is kept for this
  attempt. A job whose cancel was asked ends cancelled. While attempts remain and the failure is
  retryable it gets another attempt: pending at once when runAt is not after now, else scheduled
  until runAt (scheduledKey is only used then, so releaseJob, which passes runAt 0, passes nil).
  Otherwise it ends failed (dead-letter). Returns the job's new status and its run_at (0 unless
  scheduled). `worker`, when given (the sweep's timeouts), is named in the `failed` event, so the
  hub the worker is connected to tells it to stop (cancel_job reason timeout); nil otherwise.
  A job that ends failed or cancelled fails its waiting children (its `children` flag, read here;
  `flowKeys`: see failChildren).
]]
--- @include "emitEvent"
--- @include "enqueuePending"
--- @include "finishCancelled"
--- @include "finishFailed"
local function failAttempt(prefix, seqKey, scheduledKey, failedKey, cancelledKey, statsKey, eventsKey, cfg,
                           jobKey, jobId, jobType, attempt, err, retryable, runAt, now, worker,
                           flowKeys)
  local f = rcall('HMGET', jobKey, 'max_attempts', 'cancel', 'priority', 'group', 'children')
  rcall('HSET', jobKey, 'error', err, 'error:' .. attempt, err)
  local named = worker and {'worker', worker} or {}
  if f[2] == '1' then
    finishCancelled(prefix, cancelledKey, statsKey, eventsKey, cfg, jobKey, jobId, jobType, now, f[5],
      flowKeys)
    return 'cancelled', 0
  end
  if not retryable or tonumber(attempt) >= tonumber(f[1]) then
    finishFailed(prefix, failedKey, statsKey, eventsKey, cfg, jobKey, jobId, jobType, attempt, err, now,
      named, f[5], flowKeys)
    return 'failed', 0
  end
  local status = 'pending'
  if runAt > now then
    status = 'scheduled'
    named[#named + 1], named[#named + 2] = 'run_at', runAt
    rcall('ZADD', scheduledKey, runAt, jobId)
    rcall('HINCRBY', statsKey, 'scheduled:' .. jobType, 1)
    rcall('HSET', jobKey, 'status', 'scheduled', 'run_at', runAt, 'updated_at', now)
  else
    runAt = 0
    enqueuePending(prefix, seqKey, cfg, jobKey, jobId, jobType, tonumber(f[3]), now, f[4])
  end
  rcall('HINCRBY', statsKey, 'retried:' .. jobType, 1)
  emitEvent(eventsKey, cfg.events_maxlen, 'ev', 'failed', 'id', jobId, 'type', jobType, 'error', err,
    'final', 0, 'attempt', attempt, unpack(named))
  return status, runAt
end
