-- ARGV: 3 id, 4 wid. The blocked sender gave up.
fence()
local k, me = box(ARGV[3]) .. ':sw', NODE .. '\n' .. ARGV[4]
local was_first = redis.call('LINDEX', k, 0) == me
redis.call('LREM', k, 0, me)
-- The next blocked sender is first now.
if was_first then
  room(ARGV[3])
end
return 1
