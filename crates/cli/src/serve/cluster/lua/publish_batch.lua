-- Publish several messages on one channel in one call, atomically and in
-- order: what publish.lua does for one message, with the epoch check, the
-- offset increment and the TTL renewals paid once per batch.
--
-- KEYS[1] stream, KEYS[2] meta hash (e = epoch, s = last offset, k = kept).
-- ARGV[1] PUB/SUB channel, ARGV[2] history size (0: keep none), ARGV[3]
-- history TTL (s), ARGV[4] meta TTL (s), ARGV[5] epoch to start if the
-- channel has none, ARGV[6..] the messages' data, in publish order.
-- Returns {offset of the first, epoch, nodes that received the first}.
local stream, meta = KEYS[1], KEYS[2]
local n = #ARGV - 5
local epoch = redis.call("hget", meta, "e")
if not epoch then
  -- No epoch: the channel is new or its history was lost; a stream left
  -- over cannot continue.
  epoch = ARGV[5]
  redis.call("hset", meta, "e", epoch)
  redis.call("del", stream)
end
local last = redis.call("hincrby", meta, "s", n)
local first = last - n + 1
local meta_ttl = tonumber(ARGV[4])
if meta_ttl > 0 then
  redis.call("expire", meta, meta_ttl)
end
-- Approximate trimming; `k` bounds what history.lua reads back.
local size = tonumber(ARGV[2])
redis.call("hset", meta, "k", size)
local nodes = 0
for i = 1, n do
  local offset = first + i - 1
  local data = ARGV[5 + i]
  if size > 0 then
    redis.call("xadd", stream, "MAXLEN", "~", size, offset, "d", data)
  end
  local reached = redis.call("publish", ARGV[1], offset .. ":" .. epoch .. ":" .. data)
  if i == 1 then
    nodes = reached
  end
end
local ttl = tonumber(ARGV[3])
if size > 0 and ttl > 0 then
  redis.call("expire", stream, ttl)
end
return {first, epoch, nodes}
