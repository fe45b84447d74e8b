-- ARGV: 3 id, 4 pid, 5 role (s|r). Admits the process under the rule:
-- exclusive holds recv for one process, pair binds the first two.
-- Returns the open's number, in the order of every open of the mailbox
-- (close gives it back): whom a rule written later binds.
fence()
local id, role = ARGV[3], ARGV[5]
local b = existing(id)
local rule = redis.call('HGET', b, 'rule')
local me = ARGV[4] .. ' ' .. NODE
local hk = b .. ':h'
-- Holds of nodes whose lease ran out count for nothing (the reaper will
-- remove them anyway).
local function holders()
  local out = {}
  for _, who in ipairs(redis.call('HKEYS', hk)) do
    local n = string.match(who, '^%d+ (.*)$')
    if n and not alive(n) then
      redis.call('HDEL', hk, who)
    else
      out[#out + 1] = who
    end
  end
  return out
end
if rule == 'exclusive' and role == 'r' then
  for _, who in ipairs(holders()) do
    if who ~= me then
      fail('EBUSY exclusive: another process receives')
    end
  end
  redis.call('HINCRBY', hk, me, 1)
elseif rule == 'pair' then
  local hs = holders()
  if redis.call('HEXISTS', hk, me) == 0 then
    if #hs >= 2 then
      fail('EBUSY pair: both places taken')
    end
    redis.call('HSET', hk, me, 1)
  end
end
if role == 'r' then
  redis.call('HINCRBY', b .. ':r', me, 1)
  -- broadcast: a new receiver's empty queue may be the room a blocked
  -- sender waits for.
  pump(id)
end
redis.call('SADD', 'ipcfs:seen:' .. NODE, id)
local n = redis.call('HINCRBY', b, 'opens', 1)
redis.call('ZADD', b .. ':op', n, opener(NODE, ARGV[4], role, n))
return n
