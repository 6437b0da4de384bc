#!/usr/bin/env python3
"""Generates bad_requests.jsonl: the bad-input corpus, one malformed request a line.

Run from this directory: python3 gen_bad_requests.py > bad_requests.jsonl
Fields: id, category, method, path, headers [[name, value]], body, expect (the reply's code:
one of several allowed, '|'-separated), status (HTTP status the core answers), and optionally
envoy_status (when Envoy's own codec refuses the request before the filter sees it).
Strings are UTF-8 text; `{{xHH}}` stands for one raw byte and `{{repeat:N:TEXT}}` for TEXT
repeated N times (so huge inputs stay small here).
"""
import base64
import json
import re
from urllib.parse import quote

HOME = "home.dyn.example.test"
NEIGHBOUR = "neighbour.dyn.example.test"
UA = ["User-Agent", "dynedge-badinput/1"]


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


AUTH = ["Authorization", basic("demo", "demo-password")]
cases = []
counter = {}

# status of a DynDNS2 code on the two kinds of endpoint
CERTA = {"badauth": 401, "nohost": 404, "notfqdn": 400, "numhost": 400, "badagent": 400,
         "abuse": 429, "dnserr": 500, "911": 500}
ENDPOINTS = ["/nic/update", "/v3/update"]


def add(category, path, expect, status=None, method="GET", headers=None, body="",
        envoy_status=None):
    counter[category] = counter.get(category, 0) + 1
    if status is None:
        code = expect.split("|")[0]
        always200 = path.startswith("/nic/update") or path.startswith("/update")
        statuses = sorted({200 if always200 else CERTA.get(c, 400) for c in expect.split("|")})
        status = statuses[0] if len(statuses) == 1 else statuses
    case = {
        "id": f"{category}-{counter[category]:03d}",
        "category": category,
        "method": method,
        "path": path,
        "headers": headers if headers is not None else [UA, AUTH],
        "body": body,
        "expect": expect,
        "status": status,
    }
    # A raw space, control or non-ASCII byte in the request line is refused by Envoy's HTTP/1
    # codec (400) before any filter runs; clients percent-encode them.
    if envoy_status is None and (re.search(r"[^\x21-\x7e]", path) or "{{x" in path):
        envoy_status = 400
    if envoy_status is not None:
        case["envoy_status"] = envoy_status
    cases.append(case)


def ep(i):
    return ENDPOINTS[i % 2]


# 1. broken percent-encoding -> 400 invalid_request
broken = ["%", "%4", "%zz", "%g1", "%%", "%-1", "%4G", "a%", "%2", "%%41", "% 41", "%+1"]
for i, b in enumerate(broken):
    add("percent-encoding", f"{ep(i)}?hostname={HOME}{b}&myip=192.0.2.1", "invalid_request", 400)
    add("percent-encoding", f"{ep(i+1)}?hostname={HOME}&myip=192.0.2.1{b}", "invalid_request", 400)
add("percent-encoding", f"/nic/update?ho%stname={HOME}", "invalid_request", 400)
add("percent-encoding", f"/nic/update?%zz=1&hostname={HOME}", "invalid_request", 400)
add("percent-encoding", f"/nic/update?hostname={HOME}&password=%", "invalid_request", 400)

# 2. non-UTF-8 after decoding -> 400 invalid_request
non_utf8 = ["%ff", "%c3", "%c3%28", "%ed%a0%80", "%f8%88%80%80%80", "%c0%af", "%e2%82",
            "%fe%ff", "%80", "%f4%90%80%80", "%c1%bf"]
for i, b in enumerate(non_utf8):
    add("non-utf8", f"{ep(i)}?hostname=h{b}.dyn.example.test&myip=192.0.2.1", "invalid_request", 400)
    add("non-utf8", f"{ep(i+1)}?hostname={HOME}&myip=192.0.2.1&username={b}", "invalid_request", 400)
add("non-utf8", "/nic/update", "invalid_request", 400, method="POST",
    headers=[UA, AUTH, ["Content-Type", "application/x-www-form-urlencoded"]],
    body=f"hostname={HOME}&myip=192.0.2.1{{{{xff}}}}")
add("non-utf8", f"/nic/update?hostname={HOME}&myip=192.0.2.1", "badauth",
    headers=[UA, ["Authorization", "Basic " + base64.b64encode(b"demo:\xff\xfe").decode()]])
# raw non-UTF-8 bytes in header values (old routers send Latin-1 user agents)
add("non-utf8", f"/nic/update?hostname={HOME}&myip=192.0.2.1", "badauth",
    headers=[["User-Agent", "Routeur{{xe9}}/1"], ["Authorization", "Basic ZGVtbzp3cm9uZw{{xe9}}"]])
add("non-utf8", f"/v3/update?hostname={NEIGHBOUR}&myip=192.0.2.1", "nohost",
    headers=[["User-Agent", "Fritz{{xff}}{{xfe}}Box"], AUTH])
add("non-utf8", f"/nic/update?hostname={HOME}&myip=192.0.2.1{{{{xe9}}}}", "invalid_ip", 400)

# 3. NULs and control characters -> 400 invalid_request
controls = ["%00", "%0a", "%0d", "%0d%0a", "%09", "%1b", "%7f", "%c2%80", "%c2%9f", "%08"]
for i, c in enumerate(controls):
    add("nul-control", f"{ep(i)}?hostname={HOME}{c}&myip=192.0.2.1", "invalid_request", 400)
    add("nul-control", f"{ep(i+1)}?hostname={HOME}&myip=192.0.2.1&password=demo-password{c}&username=demo",
        "invalid_request", 400, headers=[UA])
add("nul-control", f"/nic/update?hostname={HOME}&myip=192.0.2.1", "badauth",
    headers=[UA, ["Authorization", "Basic ZGVtbzpkZW1vLXBhc3N3b3Jk{{x00}}"]], envoy_status=400)
add("nul-control", f"/nic/update?hostname={HOME}&myip=192.0.2.1", "badauth",
    headers=[UA, ["Authorization", "Bearer abc{{x01}}def"]], envoy_status=400)

# 4. duplicate parameters -> 400
for i, p in enumerate(["hostname", "myip", "myip6", "myipv6", "ipv6", "username", "password"]):
    val = {"hostname": HOME, "myip": "192.0.2.1", "username": "demo",
           "password": "demo-password"}.get(p, "2001:db8::1")
    add("duplicate", f"{ep(i)}?hostname={HOME}&{p}={val}&{p}={val}", "invalid_request", 400)
add("duplicate", f"/nic/update?hostname={HOME}", "invalid_request", 400, method="POST",
    headers=[UA, AUTH, ["Content-Type", "application/x-www-form-urlencoded"]],
    body=f"hostname={HOME}&myip=192.0.2.1")
add("duplicate", f"/nic/update?hostname={HOME}&myip=192.0.2.1,192.0.2.2", "invalid_ip", 400)
add("duplicate", f"/nic/update?hostname={HOME}&myip=2001:db8::1&myip6=2001:db8::2", "invalid_ip", 400)
add("duplicate", f"/v3/update?hostname={HOME}&myip6=2001:db8::1&ipv6=2001:db8::2", "invalid_ip", 400)
add("duplicate", f"/nic/update?hostname={HOME}&HOSTNAME={HOME}&myip=192.0.2.1&myip=192.0.2.1",
    "invalid_request", 400)

# 5. wrong methods -> badagent
for i, m in enumerate(["PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "MKCOL", "LOCK", "SEARCH"]):
    for e in ENDPOINTS:
        add("method", f"{e}?hostname={HOME}&myip=192.0.2.1", "badagent", method=m)
add("method", f"/nic/update?hostname={HOME}&myip=192.0.2.1", "badagent", method="TRACE",
    envoy_status=405)
add("method", f"/v3/update?hostname={HOME}&myip=192.0.2.1", "badagent", method="HEAD")

# 6. bodies over the limit, wrong bodies
for i, n in enumerate([16 * 1024 + 1, 20000, 64 * 1024, 512 * 1024]):
    # above 64 KiB Envoy's buffer limit (bootstrap: buffer filter) may answer 413 first
    add("body", ep(i), "payload_too_large", 413, method="POST",
        headers=[UA, AUTH, ["Content-Type", "application/x-www-form-urlencoded"]],
        body=f"hostname={HOME}&x={{{{repeat:{n}:a}}}}",
        envoy_status=413 if n >= 64 * 1024 else None)
add("body", "/nic/update", "invalid_request", 400, method="POST",
    headers=[UA, AUTH, ["Content-Type", "application/json"]],
    body=json.dumps({"hostname": HOME, "myip": "192.0.2.1"}))
add("body", "/nic/update", "invalid_request", 400, method="POST",
    headers=[UA, AUTH], body=f"hostname={HOME}&myip=192.0.2.1")
add("body", "/v3/update", "invalid_request", 400, method="POST",
    headers=[UA, AUTH, ["Content-Type", "text/plain"]], body=f"hostname={HOME}")
add("body", "/nic/update", "invalid_request", 400, method="POST",
    headers=[UA, AUTH, ["Content-Type", "application/x-www-form-urlencoded"]],
    body=f"hostname={HOME}&myip=%zz")
add("body", "/nic/update", "invalid_request", 400, method="POST",
    headers=[UA, AUTH, ["Content-Type", "application/x-www-form-urlencoded"]],
    body=f"hostname={HOME}&myip=192.0.2.1%00")
add("body", "/nic/update", "notfqdn", method="POST",
    headers=[UA, AUTH, ["Content-Type", "application/x-www-form-urlencoded"]],
    body="{{repeat:3000:&}}")

# 7. bad credentials (Basic base64, schemes, query)
bad_basic = ["Basic !!!", "Basic ZGVtbw", "Basic ZGVtbw==", "Basic =", "Basic", "Basic  ",
             "Basic ZGVtbzpkZW1vLXBhc3N3b3Jk==", "Basic ZGVtbzpkZW1vLXBhc3N3b3J",
             "Basic ZGVtbzpk-W1v_XBhc3N3b3Jk", "Basic ZGVt bzpkZW1vLXBhc3N3b3Jk",
             "Basic {{repeat:10000:QUFB}}", basic("demo", "wrong"), basic("demo", ""),
             basic("", "demo-password"), basic("DEMO", "demo-password"),
             basic("demo ", "demo-password"), basic("neighbour", "demo-password"),
             basic("nobody", "x"), "Bearer", "Bearer ", "Bearer wrong-token",
             "Bearer {{repeat:600:t}}", "Bearer dynedge_test_demodemodemodemodemodemodemodem0",
             "Digest username=\"demo\", realm=\"dynedge\"", "NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==",
             "Negotiate YIIB", "Basic=ZGVtbzpkZW1vLXBhc3N3b3Jk", basic("demo", "demo-password\u00a0"),
             basic("demo", "DEMO-PASSWORD"), "Basic " + base64.b64encode(b"demo").decode()]
for i, h in enumerate(bad_basic):
    # an unknown scheme is no credential at all: the 401 challenge
    unknown = h.split(" ")[0] not in ("Basic", "Bearer")
    add("credentials", f"{ep(i)}?hostname={HOME}&myip=192.0.2.1", "badauth",
        401 if unknown else None, headers=[UA, ["Authorization", h]])
add("credentials", f"/nic/update?hostname={HOME}&myip=192.0.2.1&username=demo&password=wrong",
    "badauth", headers=[UA])
add("credentials", f"/nic/update?hostname={HOME}&myip=192.0.2.1&password=not-a-token",
    "badauth", headers=[UA])
add("credentials", f"/nic/update?hostname={HOME}&myip=192.0.2.1&username=demo&password=",
    "badauth", headers=[UA])
add("credentials", f"/nic/update?hostname={HOME}&myip=192.0.2.1&username=demo",
    "badauth", 401, headers=[UA])
add("credentials", f"/nic/update?hostname={HOME}&myip=192.0.2.1", "badauth", 401, headers=[UA])
add("credentials", f"/v3/update?hostname={HOME}&myip=192.0.2.1", "badauth", 401, headers=[UA])
add("credentials", f"/nic/update?hostname={HOME}&myip=192.0.2.1&username=demo&password=demo-password",
    "badauth", headers=[UA, ["Authorization", "Bearer wrong"]])
add("credentials", f"/nic/update?hostname={HOME}&myip=192.0.2.1", "badagent",
    headers=[["User-Agent", ""], AUTH])
add("credentials", f"/v3/update?hostname={HOME}&myip=192.0.2.1", "badagent", headers=[AUTH])

# 8. addresses: IPv6 zone ids, malformed, special ranges -> 400 invalid_ip
bad_ips = ["fe80::1%25eth0", "fe80::1%251", "2001:db8::1%25lo", "[2001:db8::1]", "2001:db8::1/64",
           "::ffff:1.2.3.4.5", "1.2.3", "1.2.3.4.5", "01.2.3.4", "192.0.2.07", "0x7f.0.0.1",
           "2130706433", "256.1.1.1", ":::", "1.2.3.4.", "2001:db8:::1",
           "1:2:3:4:5:6:7:8:9", "{{repeat:1000:1}}", "192.0.2.1:80", "localhost", "-1.2.3.4",
           "10.0.0.1", "224.0.0.1", "255.255.255.255", "0.0.0.0", "100.64.0.1",
           "169.254.1.1", "172.16.0.1", "192.168.1.1", "fe80::1", "::", "ff02::1", "fc00::1",
           "64:ff9b::1", "::ffff:10.0.0.1", "1.1.1.1;rm", "192.0.2.1%d9%a0"]
for i, ip in enumerate(bad_ips):
    add("address", f"{ep(i)}?hostname={HOME}&myip={ip}", "invalid_ip", 400)
for i, ip in enumerate(["192.0.2.1", "fe80::1%25eth0", "2001:db8::1::", "::1%25lo0"]):
    add("address", f"{ep(i)}?hostname={HOME}&myip6={ip}", "invalid_ip", 400)

# 9. oversize and malformed hostnames -> notfqdn (or 400 when over the parameter limit)
names = ["a" * 64 + ".dyn.example.test", ("a" * 63 + ".") * 4 + "dyn.example.test",
         ("b" * 50 + ".") * 20 + "test", "{{repeat:1000:a.}}test", "{{repeat:3000:ab}}.test",
         "a..dyn.example.test", ".home.dyn.example.test", "home.dyn.example.test..",
         "-home.dyn.example.test", "home-.dyn.example.test", "ho_me.dyn.example.test",
         "localhost", "home", "ho%20me.dyn.example.test", "*.dyn.example.test",
         "home.dyn.example.test/x", "home@dyn.example.test", "home.dyn.example.test:80",
         "%2e%2e.dyn.example.test", "http://home.dyn.example.test", "home.dyn.example.test.",
         "_acme-challenge.home.dyn.example.test", "..", ".", "%20", ",,,"]
for i, n in enumerate(names):
    add("hostname", f"{ep(i)}?hostname={n}&myip=192.0.2.1", "notfqdn")
add("hostname", f"/nic/update?hostname={{{{repeat:7000:a}}}}.test&myip=192.0.2.1", "invalid_request", 400)
add("hostname", f"/nic/update?myip=192.0.2.1", "notfqdn")
add("hostname", f"/v3/update?hostname=&myip=192.0.2.1", "notfqdn")
add("hostname", f"/nic/update?hostname=%20%20&myip=192.0.2.1", "notfqdn")
add("hostname", "/nic/update?hostname=" + ",".join([HOME] * 21) + "&myip=192.0.2.1", "numhost")
add("hostname", "/v3/update?hostname={{repeat:100:a.test,}}a.test&myip=192.0.2.1", "numhost")

# 10. hosts of others, mixed case and IDN tricks -> nohost / notfqdn, never good
tricks = ["NEIGHBOUR.DYN.EXAMPLE.TEST", "Neighbour.Dyn.Example.Test", "home.dyn.example.com",
          "home.example.test", "dyn.example.test", "ns1.dyn.example.test", "x.home.dyn.example.test",
          "home.dyn.example.test.evil.test", "evil.test", "192.0.2.1",
          "\u04bbome.dyn.example.test",            # Cyrillic shha
          "h\u043eme.dyn.example.test",            # Cyrillic o
          "\u0570ome.dyn.example.test",            # Armenian ho
          "hom\u0435.dyn.example.test",            # Cyrillic ie
          "h\u03bfme.dyn.example.test",            # Greek omicron
          "home.dyn.\u0435xample.test",
          "xn--home-.dyn.example.test", "xn--.dyn.example.test", "xn--zz.dyn.example.test",
          "xn--hme-q2a.dyn.example.test", "XN--BCHER-KVA.dyn.example.test",
          "xn--ome-dxb.dyn.example.test", "xn--a.dyn.example.test", "xn--55555555.dyn.example.test",
          "ho\u200dme.dyn.example.test", "ho\u200cme.dyn.example.test", "\u202ehome.dyn.example.test",
          "home\u202e.dyn.example.test", "\U0001f3e0.dyn.example.test", "h\u0308ome.dyn.example.test",
          "nei\u0261hbour.dyn.example.test", "neighbour\u3002dyn.example.test",
          "home\u2024dyn.example.test", "\u0661\u0662.dyn.example.test", "a\u05d0.dyn.example.test"]
for i, n in enumerate(tricks):
    # as clients send them: percent-encoded UTF-8
    add("idn-case", f"{ep(i)}?hostname={quote(n, safe='.-*')}&myip=192.0.2.1", "nohost|notfqdn")
for i, n in enumerate(tricks[10:14]):
    # and raw, which Envoy's codec refuses
    add("idn-case", f"{ep(i)}?hostname={n}&myip=192.0.2.1", "nohost|notfqdn")

# 11. header and response injection attempts -> 400 / no effect
inj = ["home.dyn.example.test%0d%0aX-Injected:%20yes", "home.dyn.example.test%0aSet-Cookie:%20a=b",
       "home.dyn.example.test%22%7d,%7b%22status%22:%22good", "home.dyn.example.test%0d%0a%0d%0agood%20192.0.2.1"]
for i, h in enumerate(inj):
    expect = "notfqdn" if "%22" in h else "invalid_request"
    add("injection", f"{ep(i)}?hostname={h}&myip=192.0.2.1", expect,
        headers=[UA, AUTH, ["Accept", "application/json"]] if i % 2 else [UA, AUTH],
        status=None if expect == "notfqdn" else 400)
add("injection", f"/nic/update?hostname={HOME}&myip=192.0.2.1%0d%0aX:1", "invalid_request", 400)
add("injection", f"/nic/update?hostname={NEIGHBOUR}&myip=192.0.2.1", "nohost",
    headers=[UA, AUTH, ["X-Forwarded-For", "10.0.0.1"], ["X-Real-IP", "10.0.0.1"]])
add("injection", f"/nic/update?hostname={HOME}&myip=10.0.0.1", "invalid_ip", 400,
    headers=[UA, AUTH, ["X-Forwarded-For", "192.0.2.1"]])
add("injection", f"/nic/update?hostname={NEIGHBOUR}&myip=192.0.2.1", "nohost",
    headers=[UA, AUTH, ["X-Original-URL", f"/nic/update?hostname={HOME}"]])
add("injection", f"/nic/update?hostname={HOME}&myip=192.0.2.1", "badauth",
    headers=[UA, ["Authorization", basic("demo", "x") + ", " + AUTH[1]]])

# 12. paths that are not ours, or very long -> passed on to the 404 route (expect "pass")
paths = ["/nic/update/../nic/update?hostname=" + HOME, "//nic/update?hostname=" + HOME,
         "/NIC/UPDATE?hostname=" + HOME, "/nic/update%3fhostname=" + HOME,
         "/nic/%75pdate?hostname=" + HOME, "/nic/update/?hostname=" + HOME,
         "/nic/update;x=1?hostname=" + HOME, "/{{repeat:5000:a}}", "/nic/update{{repeat:2000:/}}",
         "/v3/update.json?hostname=" + HOME, "/nic/updat?hostname=" + HOME, "/nic/update%00"]
for p in paths:
    add("path", p, "pass", 404)
add("path", "/nic/update?{{repeat:20000:a}}", "notfqdn")
add("path", "/nic/update?{{repeat:3000:a=b&}}hostname=" + NEIGHBOUR + "&myip=192.0.2.1", "nohost")
add("path", "/nic/update?hostname=" + HOME + "&x={{repeat:70000:a}}", "invalid_request", 400,
    envoy_status=431)

for c in cases:
    print(json.dumps(c, ensure_ascii=False))
