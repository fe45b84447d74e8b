-- ARGV: 3 id. {messages, bytes, receivers, receivers waiting, senders
-- waiting, sent, received, dropped, truncated, holder...}
fence()
local b = existing(ARGV[3])
local q = redis.call('LRANGE', b .. ':q', 0, -1)
local bytes = 0
for _, r in ipairs(q) do
  bytes = bytes + payload_len(r)
end
local c = redis.call('HMGET', b, 'sent', 'received', 'dropped', 'truncated')
local out = {#q, bytes, redis.call('HLEN', b .. ':r'), redis.call('LLEN', b .. ':w'),
  redis.call('LLEN', b .. ':sw'), tonumber(c[1] or 0), tonumber(c[2] or 0),
  tonumber(c[3] or 0), tonumber(c[4] or 0)}
for _, who in ipairs(redis.call('HKEYS', b .. ':h')) do
  out[#out + 1] = who
end
return out
