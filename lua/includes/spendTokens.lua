--[[
  Function to take `taken` tokens from the bucket of a type's rate
  (typeAllowance; written only when jobs started; it expires
  when it would be full again, so an idle type leaves no key). Returns the ms until the next token
  when the rate held jobs back (it was the binding limit, it is spent, and jobs wait), else nil.
]]
local function spendTokens(prefix, bucket, limit, jobType, taken, now)
  local left = bucket.tokens - taken
  if taken > 0 then
    rcall('HSET', bucket.key, 'tokens', tostring(left), 'at', tostring(now))
    rcall('PEXPIRE', bucket.key, limit.per_ms)
  end
  if bucket.capped and left < 1 and rcall('ZCARD', prefix .. 'pending:' .. jobType) > 0 then
    return math.max(1, math.ceil((1 - left) * limit.per_ms / limit.rate))
  end
  return nil
end
