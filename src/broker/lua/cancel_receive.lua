-- ARGV: 3 id, 4 wid. The waiting reader gave up.
fence()
local wk = box(ARGV[3]) .. ':w'
local prefix = NODE .. '\n' .. ARGV[4] .. '\n'
for _, w in ipairs(redis.call('LRANGE', wk, 0, -1)) do
  if string.sub(w, 1, #prefix) == prefix then
    redis.call('LREM', wk, 0, w)
  end
end
return 1
