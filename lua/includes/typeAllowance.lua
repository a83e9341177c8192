--[[
  Function for a job type's limits (setTypeLimits; cfg.limits, decoded by getQueueConfig only when
  some type has one): at most `concurrency` jobs of the type active at once across every worker and
  hub (the `active:<type>` counter of the stats hash, which the scripts keep anyway), and at most
  `rate` starts per `per_ms`, a token bucket in `{Q}:rate:<type>` (tokens, refilled at
  rate / per_ms a ms up to `rate`, and the time of the last write). A type without limits costs no
  call; one with a rate, two (HMGET, and HSET + PEXPIRE when it started jobs).

  Returns how many jobs of the type may start now, and the bucket to spend from (spendTokens; nil
  without a rate). `stats`: see countStat; when it is a batch table, its pending `active:` changes count too
  (a completion of this call frees its slot).
]]
local function typeAllowance(prefix, stats, limit, jobType, now)
  local allow, bucket = math.huge, nil
  if limit.concurrency then
    local field = 'active:' .. jobType
    local key = type(stats) == 'table' and prefix .. 'stats' or stats
    local active = tonumber(rcall('HGET', key, field)) or 0
    if type(stats) == 'table' then
      active = active + (stats[field] or 0)
    end
    allow = math.max(0, limit.concurrency - active)
  end
  if limit.rate then
    local key = prefix .. 'rate:' .. jobType
    local b = rcall('HMGET', key, 'tokens', 'at')
    local tokens = limit.rate  -- no bucket (never used, or expired after a full refill): full
    if b[1] then
      tokens = math.min(limit.rate, tonumber(b[1]) + math.max(0, now - tonumber(b[2])) * limit.rate / limit.per_ms)
    end
    local whole = math.floor(tokens)
    bucket = {key = key, tokens = tokens, capped = whole < allow}
    allow = math.min(allow, whole)
  end
  return allow, bucket
end
