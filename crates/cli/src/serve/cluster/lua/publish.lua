-- Publish one message on a channel, atomically: take the channel's next
-- offset, keep the message in the channel's stream and send it to every node
-- with its position, so that all nodes see one order per channel.
--
-- KEYS[1] stream, KEYS[2] meta hash (e = epoch, s = last offset),
-- KEYS[3] (optional) where the result of an idempotent publish is kept.
-- ARGV[1] PUB/SUB channel, ARGV[2] data, ARGV[3] history size (0: keep none),
-- ARGV[4] history TTL (s), ARGV[5] meta TTL (s), ARGV[6] epoch to start if
-- the channel has none, ARGV[7] TTL (s) of the idempotency result.
-- Returns {offset, epoch, duplicate (0/1), nodes that received it}.
local stream, meta, done = KEYS[1], KEYS[2], KEYS[3]
if done then
  local prev = redis.call("get", done)
  if prev then
    local offset, epoch = string.match(prev, "^(%d+):(.*)$")
    return {tonumber(offset), epoch, 1, 0}
  end
end
local epoch = redis.call("hget", meta, "e")
if not epoch then
  -- No epoch: the channel is new or its history was lost (a restart without
  -- persistence, an expired meta). A stream left over cannot continue.
  epoch = ARGV[6]
  redis.call("hset", meta, "e", epoch)
  redis.call("del", stream)
end
local offset = redis.call("hincrby", meta, "s", 1)
local meta_ttl = tonumber(ARGV[5])
if meta_ttl > 0 then
  redis.call("expire", meta, meta_ttl)
end
-- The stream is trimmed approximately (whole nodes at a time, far cheaper
-- than exact trimming); `k` records how many offsets count as kept, and
-- history.lua never reads further back than that.
local size = tonumber(ARGV[3])
redis.call("hset", meta, "k", size)
if size > 0 then
  redis.call("xadd", stream, "MAXLEN", "~", size, offset, "d", ARGV[2])
  local ttl = tonumber(ARGV[4])
  if ttl > 0 then
    redis.call("expire", stream, ttl)
  end
end
local nodes = redis.call("publish", ARGV[1], offset .. ":" .. epoch .. ":" .. ARGV[2])
if done then
  redis.call("set", done, offset .. ":" .. epoch, "EX", ARGV[7])
end
return {offset, epoch, 0, nodes}
