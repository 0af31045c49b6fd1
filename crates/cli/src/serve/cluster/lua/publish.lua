-- Publish one or more messages on one channel, atomically and in order:
-- take the channel's next offsets, keep the messages in the channel's stream
-- and send each to every node with its position, so that all nodes see one
-- order per channel. The epoch check, the offset increment and the TTL
-- renewals are paid once per call.
--
-- KEYS[1] stream, KEYS[2] meta hash (e = epoch, s = last offset, k = kept),
-- KEYS[3] (optional, with exactly one message) where the result of an
-- idempotent publish is kept.
-- ARGV[1] PUB/SUB channel, ARGV[2] history size (0: keep none), ARGV[3]
-- history TTL (s), ARGV[4] meta TTL (s), ARGV[5] epoch to start if the
-- channel has none, ARGV[6] TTL (s) of the idempotency result, ARGV[7..]
-- the messages' data, in publish order.
-- Returns {offset of the first, epoch, duplicate (0/1), nodes that received
-- the first}.
local stream, meta, done = KEYS[1], KEYS[2], KEYS[3]
local n = #ARGV - 6
if done then
  if n ~= 1 then
    return redis.error_reply("an idempotent publish carries one message")
  end
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
-- The stream is trimmed approximately (whole nodes at a time, far cheaper
-- than exact trimming); `k` records how many offsets count as kept, and
-- history.lua never reads further back than that.
local size = tonumber(ARGV[2])
redis.call("hset", meta, "k", size)
local nodes = 0
for i = 1, n do
  local offset = first + i - 1
  local data = ARGV[6 + i]
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
if done then
  redis.call("set", done, first .. ":" .. epoch, "EX", ARGV[6])
end
return {first, epoch, 0, nodes}
