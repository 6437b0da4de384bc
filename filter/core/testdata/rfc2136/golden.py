#!/usr/bin/python3
"""Independent golden bytes for the tests of src/backends/rfc2136/, made with dnspython (Debian
python3-dnspython 2.3). Prints hex lines the Rust tests embed:

  update-sha256  the UPDATE of `golden_update_is_byte_identical_to_dnspython` signed hmac-sha256
  update-sha512  the same, signed hmac-sha512
  answer-*       a server's signed answers to update-sha256 (dnspython as the server): NOERROR,
                 YXRRSET, and a NOERROR whose header id was rewritten by a relay (Original ID kept)

Run: /usr/bin/python3 filter/core/testdata/rfc2136/golden.py
"""
import time

import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update

NOW = 1_700_000_000
SECRET256 = "SU3E55TYJCfXunkqJgW75/rA5qLYv1yB7wB8o82HwMA="
SECRET512 = "e7K15czUYLDwp6QZqtZI9gdwr+vpbYcD9jvQlJjeE11yf8EL7Z5VgF/r7+fx2DMS/mDUtUrqqO1VpV1PrV/TWg=="
time.time = lambda: NOW  # dnspython signs with time.time()


def update(alg, key_name, secret):
    ring = dns.tsigkeyring.from_text({key_name: (alg, secret)})
    m = dns.update.UpdateMessage("dyn.example.test.", keyring=ring, keyname=dns.name.from_text(key_name),
                                 keyalgorithm=dns.name.from_text(alg), id=0x1234)
    m.flags = dns.opcode.to_flags(dns.opcode.UPDATE)  # no RD
    host = "home.dyn.example.test."
    m.absent(host, "CNAME")
    m.absent("_acme-challenge.home.dyn.example.test.", "CNAME")
    m.delete(host, "A")
    m.add(host, 60, "A", "192.0.2.1")
    m.add(host, 60, "A", "192.0.2.2")
    m.delete(host, "AAAA")
    m.delete("_acme-challenge.home.dyn.example.test.", "TXT")
    m.add("_acme-challenge.home.dyn.example.test.", 60, "TXT", '"token-value"')
    return m, ring


req, ring = update("hmac-sha256", "ddns-key", SECRET256)
wire = req.to_wire()
print("update-sha256", wire.hex())
req512, _ = update("hmac-sha512", "ddns-key512", SECRET512)
print("update-sha512", req512.to_wire().hex())

for label, rcode, relay_id in [("answer-noerror", dns.rcode.NOERROR, None),
                               ("answer-yxrrset", dns.rcode.YXRRSET, None),
                               ("answer-relayed", dns.rcode.NOERROR, 0x0a00)]:
    seen = bytearray(wire)
    if relay_id is not None:
        # A relay (dnsdist) gave the request its own header id; the server signs its answer
        # with that id as the Original ID, and the relay restores our id in the header only.
        seen[0:2] = relay_id.to_bytes(2, "big")
    parsed = dns.message.from_wire(bytes(seen), keyring=ring)
    resp = dns.message.make_response(parsed)
    resp.set_rcode(rcode)
    out = bytearray(resp.to_wire())
    out[0:2] = (0x1234).to_bytes(2, "big")
    print(label, bytes(out).hex())
