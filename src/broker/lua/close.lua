-- ARGV: 3 id, 4 pid, 5 role (s|r), 6 exited (1|0), 7 the open's number
-- (0: none; an exit closes no descriptor).
fence()
local id, role = ARGV[3], ARGV[5]
local b = box(id)
if redis.call('EXISTS', b) == 0 then
  return 0
end
local me = ARGV[4] .. ' ' .. NODE
if ARGV[7] ~= '0' then
  redis.call('ZREM', b .. ':op', opener(NODE, ARGV[4], role, ARGV[7]))
end
local function down(k)
  local n = tonumber(redis.call('HGET', k, me) or '0')
  if n <= 1 then
    redis.call('HDEL', k, me)
    if k == b .. ':r' then
      redis.call('HDEL', b .. ':rs', me)
    end
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
    -- The hold passes to the live process that has received the longest
    -- (one that kept a descriptor from before the rule changed), as on a
    -- local mount.
    if redis.call('HLEN', b .. ':h') == 0 then
      local next, since = nil, nil
      local rs = redis.call('HGETALL', b .. ':rs')
      for i = 1, #rs, 2 do
        local who, n = rs[i], tonumber(rs[i + 1])
        if who ~= me and (not since or n < since)
            and alive(string.match(who, '^%d+ (.*)$')) then
          next, since = who, n
        end
      end
      if next then
        redis.call('HSET', b .. ':h', next, redis.call('HGET', b .. ':r', next) or 1)
      end
    end
  end
end
if ARGV[6] == '1' then
  redis.call('HDEL', b .. ':r', me)
  redis.call('HDEL', b .. ':rs', me)
  redis.call('HDEL', b .. ':h', me)
  redis.call('DEL', copies(id, me))
end
-- broadcast: fewer receivers may be room for blocked senders.
pump(id)
return 1
