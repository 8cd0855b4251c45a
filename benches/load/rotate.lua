-- wrk script of benches/load/run.sh (S3-rs): every request carries the next token of the file
-- $BENCH_TOKENS (one a line, made by rs256.py sign), in file order, round and round. The file has
-- more tokens per shard of the gateway's verified-token cache than a shard holds, so no token is
-- still cached when it comes round again: every request pays a full RS256 verification. The
-- position is kept in $BENCH_TOKENS.pos from one wrk run to the next (warm-up, measurement, next
-- repetition), so the order stays cyclic across runs too. Run with -t1 (one sequence).
-- Other headers (X-Client-Id) come from wrk's -H.
local tokens, n = {}, 0
pos = 0 -- global: done() reads it from the thread (thread:get)

local function pos_file()
   return os.getenv("BENCH_TOKENS") .. ".pos"
end

function init(_)
   for line in io.lines(os.getenv("BENCH_TOKENS")) do
      if #line > 0 then
         n = n + 1
         tokens[n] = "Bearer " .. line
      end
   end
   assert(n > 0, "no tokens in $BENCH_TOKENS")
   local f = io.open(pos_file(), "r")
   if f then
      pos = (tonumber(f:read("*l")) or 0) % n
      f:close()
   end
end

function request()
   pos = pos % n + 1
   wrk.headers["Authorization"] = tokens[pos]
   return wrk.format()
end

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function done(_, _, _)
   local f = assert(io.open(pos_file(), "w"))
   f:write(tostring(threads[1]:get("pos")), "\n")
   f:close()
end
