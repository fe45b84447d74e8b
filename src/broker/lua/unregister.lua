-- A node leaving: its lease ends now and what it held goes at once.
fence()
redis.call('DEL', 'ipcfs:node:' .. NODE)
reap(NODE)
return 1
