-- etcd's HTTP/JSON gateway: POST /v3/kv/put {"key": b64, "value": b64}.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local head, value64
function init(args)
	bench_init(args)
	head = "POST /v3/kv/put HTTP/1.1\r\nHost: " .. wrk.headers["Host"] ..
		"\r\nContent-Type: application/json\r\nContent-Length: "
	value64 = base64(random_value(value_bytes))
end

function request()
	local body = '{"key":"' .. base64(random_key()) .. '","value":"' .. value64 .. '"}'
	return head .. #body .. "\r\n\r\n" .. body
end
