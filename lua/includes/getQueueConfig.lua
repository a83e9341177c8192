--[[
  Function to read the queue's settings and limits, which the store writes into the meta hash at
  start-up (the settings of empfast/config.py, the limits of empfast/limits.py LUA_LIMITS), so no
  script restates a number: one HMGET per script call. Returns a table keyed by the meta-hash
  field names, or, when a field is missing (the meta hash was deleted under a running store, e.g.
  by FLUSHDB), an ERR_NO_CONFIG error reply for the script to return before it writes anything:
  the store then writes the meta hash again and retries once. Four fields are optional: `paused`
  (the job types no worker is given, setTypePaused), an empty list when absent, `limits` (the job
  types' limits, setTypeLimits: a JSON object decoded only when present, else cfg.limits is nil), and
  `type_timeouts` (the job types' default timeouts in ms, a JSON object), kept as its text in
  cfg.type_timeouts (nil when absent) for addJobs alone to decode, so no other call pays for it, and
  `grouped` (the job types that have had a job with a group, whose claims go round-robin across
  groups: groupedQueue), decoded into a set only when present, else cfg.grouped is nil.
]]
local function getQueueConfig(metaKey)
  local fields = {'events_maxlen', 'keep_completed_ms', 'keep_completed_max', 'keep_failed_ms',
    'keep_failed_max', 'max_job_id_bytes', 'max_job_type_bytes', 'max_worker_id_bytes',
    'max_priority', 'max_attempts', 'max_delay_ms', 'max_timeout_ms', 'max_concurrency', 'max_claim',
    'max_job_types', 'job_timeout_ms', 'max_log_lines', 'max_log_line_bytes', 'max_group_bytes',
    'max_dependencies'}
  local values = rcall('HMGET', metaKey, 'paused', 'type_timeouts', 'limits', 'grouped', unpack(fields))
  local cfg = {}
  for i, name in ipairs(fields) do
    cfg[name] = tonumber(values[i + 4])
    if not cfg[name] then
      return redis.error_reply('ERR_NO_CONFIG the meta hash has no ' .. name)
    end
  end
  cfg.paused = values[1] and cjson.decode(values[1]) or {}
  cfg.type_timeouts = values[2] or nil
  cfg.limits = values[3] and cjson.decode(values[3]) or nil
  if values[4] then
    cfg.grouped = {}
    for _, jobType in ipairs(cjson.decode(values[4])) do
      cfg.grouped[jobType] = true
    end
  end
  return cfg
end
