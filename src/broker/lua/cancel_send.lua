-- ARGV: 3 id, 4 wid, 5 pid. The blocked sender gave up: {'cancelled'} if
-- its messages were still waiting (they are dropped), {'sent'} if they
-- went in already (a t=sent is on its way to this node), {'gone'} if the
-- broker does not know it (a restart without persistence).
fence()
local id, wid = ARGV[3], ARGV[4]
local k, me = box(id) .. ':sw', NODE .. '\n' .. wid .. '\n' .. ARGV[5]
if redis.call('LREM', k, 0, me) > 0 then
  redis.call('DEL', offer_key(id, me))
  -- The senders behind it may fit where it did not.
  pump(id)
  return 'cancelled'
end
if went_in(id, wid) then
  return 'sent'
end
return 'gone'
