--[[
  Function to read the clock in milliseconds: the caller's value when one is given (tests drive
  leases and delays this way), else Redis's own clock, so every hub shares one clock.
]]
local function getTime(given)
  if given ~= nil and given ~= '' then
    return tonumber(given)
  end
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
