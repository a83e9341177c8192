--[[
  Function to read up to `want` members of a sorted set after a cursor, in the set's order (score,
  then id, as Redis orders a sorted set) or reversed: those after (afterScore, afterId), and, when
  `lastScore` is given, none scored past it. Members at the cursor's score are skipped up to and
  including the cursor's id, so a cursor inside a tie (many jobs finished in one millisecond) loses
  nothing and repeats nothing. afterScore "" starts at the set's first member. Returns the members
  as {id, score text, score} tables and whether the set ends there (no member after the last one
  returned within the bounds). Reads in chunks, so a long tie costs more reads, never a long one.
]]
local function rangeAfter(key, ascending, afterScore, afterId, lastScore, want)
  local cursorScore = tonumber(afterScore)
  local found, offset, chunk = {}, 0, want + 32
  while true do
    local page
    if ascending then
      page = rcall('ZRANGEBYSCORE', key, afterScore == '' and '-inf' or afterScore, lastScore or '+inf',
        'WITHSCORES', 'LIMIT', offset, chunk)
    else
      page = rcall('ZREVRANGEBYSCORE', key, afterScore == '' and '+inf' or afterScore, lastScore or '-inf',
        'WITHSCORES', 'LIMIT', offset, chunk)
    end
    for i = 1, #page, 2 do
      local id, score = page[i], tonumber(page[i + 1])
      local after = not cursorScore or score ~= cursorScore
        or (ascending and id > afterId) or (not ascending and id < afterId)
      if after then
        found[#found + 1] = {id, page[i + 1], score}
        if #found == want then
          return found, false
        end
      end
    end
    if #page < 2 * chunk then
      return found, true
    end
    offset = offset + chunk
  end
end
