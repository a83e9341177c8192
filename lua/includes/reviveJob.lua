--[[
  Function to make a job that ended failed or cancelled pending again (retryJob, retryJobs): out
  of its finished set, its retention lifted, `extra` more attempts than it has used (the attempt
  count goes on, so every attempt's error stays on record and an old lease stays fenced), then
  behind the waiting jobs of its priority. `retryId` is kept so that a repeat of the same retry
  is answered as done.
]]
--- @include "enqueuePending"
local function reviveJob(prefix, seqKey, cfg, setKey, jobKey, jobId, jobType, priority, attempts, extra,
                         retryId, now)
  rcall('ZREM', setKey, jobId)
  rcall('PERSIST', jobKey)
  rcall('HSET', jobKey, 'max_attempts', (tonumber(attempts) or 0) + extra, 'progress', 0, 'message', '',
    'cancel', 0, 'retry_id', retryId)
  rcall('HDEL', jobKey, 'finished_at', 'worker', 'done_by')
  enqueuePending(prefix, seqKey, cfg, jobKey, jobId, jobType, tonumber(priority) or 0, now,
    rcall('HGET', jobKey, 'group'))
end
