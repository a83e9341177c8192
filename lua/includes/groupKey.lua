--[[
  Function for the key of a group's pending jobs of one type (docs/job-control.md 4): the type's
  length leads, so no type and group pair names another pair's key (types and groups may hold ':').
  Group '' holds the type's jobs without a group, once the type has groups.
]]
local function groupKey(prefix, jobType, group)
  return prefix .. 'group:' .. #jobType .. ':' .. jobType .. ':' .. group
end
