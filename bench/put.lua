-- raftexample: PUT /bench-<random n> with a random value (one per thread).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local head, tail
function init(args)
	bench_init(args)
	head = "PUT /"
	tail = " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] .. "\r\nContent-Length: " ..
		value_bytes .. "\r\n\r\n" .. random_value(value_bytes)
end

function request()
	return head .. random_key() .. tail
end
