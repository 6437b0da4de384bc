// Drives the official ApertoDNS client (apertodns-client, unchanged) against a dynedge gateway
// and checks what it gets back. Every method a real integration uses is called once.
//
//   APERTODNS_CLIENT=.run/apertodns-client/dist/index.js BASE_URL=https://127.0.0.1:8443 \
//   TOKEN=dynedge_test_demo... HOSTNAME=home.dyn.example.test \
//   NODE_EXTRA_CA_CERTS=.run/tls/cert.pem node examples/apertodns-client/check.js
//
// Prints one line per step; exits 1 at the first mismatch.
'use strict';
const path = require('path');
const assert = require('assert/strict');

const lib = require(path.resolve(process.env.APERTODNS_CLIENT || '.run/apertodns-client/dist/index.js'));
const { ApertoDNSClient } = lib;
const baseUrl = process.env.BASE_URL || 'https://127.0.0.1:8443';
const token = process.env.TOKEN || 'dynedge_test_demodemodemodemodemodemodemodemo';
const host = process.env.HOSTNAME_UNDER_TEST || 'home.dyn.example.test';
const foreign = process.env.FOREIGN_HOSTNAME || 'neighbour.dyn.example.test';

const client = new ApertoDNSClient({ baseUrl, token, retry: { maxRetries: 0 } });

async function step(name, fn) {
  try {
    const out = await fn();
    console.log(`ok ${name}${out === undefined ? '' : ' ' + JSON.stringify(out)}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  }
}

(async () => {
  await step('getInfo', async () => {
    const info = await client.getInfo();
    assert.equal(info.protocol, 'apertodns');
    assert.equal(info.protocol_version, '1.4.0');
    assert.equal(info.capabilities.txt_records, true);
    return { provider: info.provider.name };
  });
  await step('getHealth', async () => {
    const h = await client.getHealth();
    assert.equal(h.status, 'healthy');
    assert.equal(typeof h.uptime, 'number');
  });
  await step('update ipv4 auto', async () => {
    const r = await client.update({ hostname: host, ipv4: 'auto' });
    assert.equal(r.hostname, host);
    assert.equal(r.ipv4, '127.0.0.1');
    return { ipv4: r.ipv4, changed: r.changed };
  });
  await step('update explicit ipv4', async () => {
    const r = await client.update({ hostname: host, ipv4: '203.0.113.50', ttl: 300 });
    assert.equal(r.ipv4, '203.0.113.50');
    assert.equal(r.previous_ipv4, '127.0.0.1');
    assert.equal(r.changed, true);
    return { previous_ipv4: r.previous_ipv4 };
  });
  await step('update explicit ipv6', async () => {
    const r = await client.update({ hostname: host, ipv6: '2001:db8::1' });
    assert.equal(r.ipv6, '2001:db8::1');
    assert.equal(r.ipv4, '203.0.113.50');
  });
  await step('update unchanged', async () => {
    const r = await client.update({ hostname: host, ipv4: '203.0.113.50' });
    assert.equal(r.changed, false);
  });
  await step('getStatus', async () => {
    const s = await client.getStatus(host);
    assert.equal(s.hostname, host);
    assert.equal(s.ipv4, '203.0.113.50');
    assert.equal(s.ipv6, '2001:db8::1');
    assert.ok(s.update_count_total >= 3);
    return { update_count_total: s.update_count_total };
  });
  await step('listDomains', async () => {
    const d = await client.listDomains();
    assert.ok(Array.isArray(d));
    assert.ok(d.some((x) => x.hostname === host && x.ipv4 === '203.0.113.50'));
  });
  await step('bulkUpdate (partial)', async () => {
    const r = await client.bulkUpdate({ updates: [
      { hostname: host, ipv4: '203.0.113.51' },
      { hostname: foreign, ipv4: '203.0.113.52' },
    ] });
    assert.deepEqual(r.summary, { total: 2, successful: 1, failed: 1 });
    assert.equal(r.results[1].error.code, 'hostname_not_owned');
  });
  await step('setTxt twice (wildcard + apex)', async () => {
    await client.setTxt(host, '_acme-challenge', 'token-apex');
    const r = await client.setTxt(host, '_acme-challenge', 'token-wildcard');
    assert.equal(r.hostname, host);
  });
  await step('deleteTxt one value', async () => {
    await client.deleteTxt(host, '_acme-challenge', 'token-apex');
  });
  await step('legacyUpdate', async () => {
    const line = await client.legacyUpdate(host, '203.0.113.53');
    assert.equal(line, 'good 203.0.113.53');
    return line;
  });
  await step('foreign hostname is ForbiddenError hostname_not_owned', async () => {
    await assert.rejects(client.update({ hostname: foreign, ipv4: '203.0.113.9' }), (e) => {
      assert.equal(e.name, 'ForbiddenError');
      assert.equal(e.code, 'hostname_not_owned');
      return true;
    });
  });
  await step('a private address is rejected by the server (invalid_ip)', async () => {
    // The client checks only the syntax; the range rule is the server's (docs/dialects.md, Special ranges).
    await assert.rejects(client.update({ hostname: host, ipv4: '10.0.0.1' }), (e) => {
      assert.equal(e.code, 'invalid_ip');
      assert.equal(e.statusCode, 400);
      return true;
    });
  });
  await step('wrong token is AuthenticationError invalid_token', async () => {
    const bad = new ApertoDNSClient({ baseUrl, token: 'dynedge_live_wrongwrongwrongwrongwrongwrong12', retry: { maxRetries: 0 } });
    await assert.rejects(bad.getStatus(host), (e) => {
      assert.equal(e.name, 'AuthenticationError');
      assert.equal(e.code, 'invalid_token');
      return true;
    });
  });
  await step('rate-limit headers are read', async () => {
    const rl = client.getRateLimitInfo();
    assert.ok(rl && rl.limit > 0, JSON.stringify(rl));
    return rl;
  });
  console.log('all ok');
})();
