-- ARGV: 3 id, 4 rule, 5 capacity (-1 unlimited), 6 maxsize, 7 text.
-- A new rule binds the processes that have the mailbox open, in the
-- order they opened it (pair: the first two; exclusive: the first that
-- receives), and waiting readers and blocked senders it refuses are told
-- (t=busy), as on a local mount (ipcfs(7), RECEIVER RULES).
fence()
local id, rule = ARGV[3], ARGV[4]
local b = existing(id)
local old = redis.call('HGET', b, 'rule')
redis.call('HSET', b, 'rule', rule, 'capacity', ARGV[5], 'maxsize', ARGV[6], 'policy', ARGV[7])
if old ~= rule then
  local hk = b .. ':h'
  redis.call('DEL', hk)
  for _, o in ipairs(openers(id)) do
    if not alive(o.node) then
      -- Its node is gone; the reaper drops the rest.
    elseif rule == 'pair' and redis.call('HLEN', hk) < 2 then
      redis.call('HSET', hk, o.who, 1)
    elseif rule == 'exclusive' and o.role == 'r' and redis.call('HLEN', hk) == 0 then
      redis.call('HSET', hk, o.who, redis.call('HGET', b .. ':r', o.who) or 1)
    end
  end
  local function allowed(who, role)
    if rule == 'pair' then
      return redis.call('HLEN', hk) < 2 or redis.call('HEXISTS', hk, who) == 1
    elseif rule == 'exclusive' then
      return role == 's' or redis.call('HLEN', hk) == 0 or redis.call('HEXISTS', hk, who) == 1
    end
    return true
  end
  for _, w in ipairs(redis.call('LRANGE', b .. ':w', 0, -1)) do
    local f = lines(w, 5)
    if not allowed(f[3] .. ' ' .. f[1], 'r') then
      redis.call('LREM', b .. ':w', 1, w)
      post(f[1], 't', 'busy', 'm', id, 'w', f[2])
    end
  end
  for _, e in ipairs(redis.call('LRANGE', b .. ':sw', 0, -1)) do
    local f = lines(e, 3)
    if not allowed(f[3] .. ' ' .. f[1], 's') then
      redis.call('LREM', b .. ':sw', 1, e)
      redis.call('DEL', offer_key(id, e))
      post(f[1], 't', 'busy', 'm', id, 'w', f[2])
    end
  end
end
-- A larger capacity, or a sender refused before the others, is room.
pump(id)
everyone('t', 'tree')
return 1
