-- Whether this node's token is still the current one (1) or not (0).
if redis.call('GET', 'ipcfs:node:' .. NODE) == TOKEN then
  return 1
end
return 0
