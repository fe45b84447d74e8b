-- ARGV: 3 id, 4 pid, 5 role (s|r), 6 exited (1|0).
fence()
local id, role = ARGV[3], ARGV[5]
local b = box(id)
if redis.call('EXISTS', b) == 0 then
  return 0
end
local me = ARGV[4] .. ' ' .. NODE
local function down(k)
  local n = tonumber(redis.call('HGET', k, me) or '0')
  if n <= 1 then
    redis.call('HDEL', k, me)
  else
    redis.call('HINCRBY', k, me, -1)
  end
end
if role == 'r' then
  down(b .. ':r')
  if redis.call('HEXISTS', b .. ':r', me) == 0 then
    -- broadcast: a process that no longer receives drops its copies.
    redis.call('DEL', copies(id, me))
  end
  if redis.call('HGET', b, 'rule') == 'exclusive' then
    down(b .. ':h')
  end
end
if ARGV[6] == '1' then
  redis.call('HDEL', b .. ':r', me)
  redis.call('HDEL', b .. ':h', me)
  redis.call('DEL', copies(id, me))
end
-- broadcast: fewer receivers may be room for blocked senders.
pump(id)
return 1
