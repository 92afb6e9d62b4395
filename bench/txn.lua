-- raftexample: POST /v1/txn, a small multi-key transaction over the key space
-- put writes: if bench-<a> exists, put bench-<a> and bench-<b> (a != b, both
-- uniform), each with a random value of the put workload's size (one per
-- thread); else get bench-<a>. Script arguments after "--": key space, value
-- bytes, wrk threads (unused).
--
-- bench/benchtool load writes every key of the space first and nothing
-- deletes one, so the compare holds and every transaction writes both keys
-- under one revision: bench/run.sh checks that from the member's revision and
-- its count of 200s, since wrk counts only the status.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

-- json_value returns n random printable ASCII bytes that need no escaping in
-- a JSON string (no '"', no '\').
local function json_value(n)
	local t = {}
	for i = 1, n do
		local c = math.random(33, 124)
		if c >= 34 then c = c + 1 end -- skip '"'
		if c >= 92 then c = c + 1 end -- skip '\'
		t[i] = string.char(c)
	end
	return table.concat(t)
end

local head, p1, p2, p3, p4, p5
function init(args)
	bench_init(args)
	local value = json_value(value_bytes)
	head = "POST /v1/txn HTTP/1.1\r\nHost: " .. wrk.headers["Host"] ..
		"\r\nContent-Type: application/json\r\nContent-Length: "
	p1 = '{"compare":[{"key":"'
	p2 = '","exists":true}],"success":[{"put":{"key":"'
	p3 = '","value":"' .. value .. '"}},{"put":{"key":"'
	p4 = '","value":"' .. value .. '"}}],"failure":[{"get":{"key":"'
	p5 = '"}}]}'
end

function request()
	local n = math.random(0, keys - 1)
	-- a different key, uniform over the others (with --keys 1 there is
	-- none: the server refuses a transaction that puts one key twice)
	local m = (n + math.random(1, math.max(keys - 1, 1))) % keys
	local a, b = "bench-" .. n, "bench-" .. m
	local body = p1 .. a .. p2 .. a .. p3 .. b .. p4 .. a .. p5
	return head .. #body .. "\r\n\r\n" .. body
end
