import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TrustedProxies } from './forwarded.ts';

test('without trusted proxies the connection is the client, whatever X-Forwarded-For says', () => {
  const none = TrustedProxies.of([]);
  assert.equal(none.clientOf('198.51.100.7', '203.0.113.9'), '198.51.100.7');
});

test('behind trusted proxies the client is the rightmost untrusted hop', () => {
  const proxies = TrustedProxies.of(['127.0.0.1', '10.0.0.0/8', 'fd00::/8']);
  assert.equal(proxies.clientOf('127.0.0.1', '203.0.113.9'), '203.0.113.9');
  assert.equal(proxies.clientOf('::ffff:127.0.0.1', '203.0.113.9'), '203.0.113.9');
  // A client that forges the header only adds hops to the left of what the proxies wrote.
  assert.equal(proxies.clientOf('10.1.2.3', '6.6.6.6, 203.0.113.9, 10.0.0.5'), '203.0.113.9');
  assert.equal(proxies.clientOf('10.1.2.3', ['6.6.6.6', '203.0.113.9']), '203.0.113.9');
  assert.equal(proxies.clientOf('fd00::1', '2001:db8::5'), '2001:db8::5');
  // Only proxies in the chain: the leftmost is as close to the client as can be known.
  assert.equal(proxies.clientOf('10.1.2.3', '10.0.0.9'), '10.0.0.9');
  // Garbage stops the walk at the last address that could be believed.
  assert.equal(proxies.clientOf('10.1.2.3', 'not-an-ip, 10.0.0.9'), '10.0.0.9');
  assert.equal(proxies.clientOf('10.1.2.3', 'not-an-ip'), '10.1.2.3');
  assert.equal(proxies.clientOf('10.1.2.3', undefined), '10.1.2.3');
  // A connection from elsewhere is the client even with the header.
  assert.equal(proxies.clientOf('198.51.100.7', '203.0.113.9'), '198.51.100.7');
  assert.equal(proxies.has('11.0.0.1'), false);
  assert.equal(proxies.has('10.255.255.255'), true);
});
