-- ARGV[3]: lease in ms. Takes the node name with a new token, unless a
-- live incarnation holds it: {'held', pttl}. A dead previous incarnation
-- of the name is reaped first. Returns {'ok', MARK}: the id of a `t=start`
-- entry put in the inbox, after which every entry is for this
-- incarnation (the pump goes on reading after it).
local key = 'ipcfs:node:' .. NODE
if redis.call('EXISTS', key) == 1 then
  return {'held', redis.call('PTTL', key)}
end
if redis.call('SISMEMBER', 'ipcfs:nodes', NODE) == 1 then
  reap(NODE)
end
redis.call('SET', key, TOKEN, 'PX', ARGV[3])
redis.call('SADD', 'ipcfs:nodes', NODE)
return {'ok', redis.call('XADD', 'ipcfs:inbox:' .. NODE, '*', 't', 'start')}
