import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import {
  ATTR_FINGERPRINT,
  ATTR_MAPPED_ADDRESS,
  ATTR_SOFTWARE,
  ATTR_XOR_MAPPED_ADDRESS,
  ATTR_XOR_MAPPED_ADDRESS_ALT,
  BINDING_REQUEST,
  BINDING_REQUEST_SIZE,
  BINDING_SUCCESS,
  encodeBindingRequest,
  encodeBindingResponse,
  HEADER_SIZE,
  MAGIC_COOKIE,
  newTransactionId,
  parseBindingRequest,
  parseBindingResponse,
} from './codec.ts';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');

// docs/derp-stun-nat.md §3.1 / §3.2, byte for byte.
const TXID = hex('0102030405060708090a0b0c');
const TAILSCALED_REQUEST = hex(
  '0001 0014 2112a442 0102030405060708090a0b0c 8022 0008 7461696c6e6f6465 8028 0004 b32c370f',
);
const RESPONSE_V4 = hex('0101 000c 2112a442 0102030405060708090a0b0c 0020 0008 00 01 83bb e700a449');
const RESPONSE_V6 = hex(
  '0101 0018 2112a442 0102030405060708090a0b0c 0020 0014 00 02 83bb 0113a9fa0102030405060708090a0b0d',
);

interface Attribute {
  type: number;
  value: Uint8Array;
}

/** A STUN message of `type` with `attributes` (padded), optionally ending in a correct FINGERPRINT. */
function message(type: number, txid: Uint8Array, attributes: Attribute[], withFingerprint = false): Buffer {
  const parts: Buffer[] = [];
  for (const { type: attrType, value } of attributes) {
    const head = Buffer.alloc(4);
    head.writeUInt16BE(attrType, 0);
    head.writeUInt16BE(value.length, 2);
    parts.push(head, Buffer.from(value), Buffer.alloc((4 - (value.length % 4)) % 4));
  }
  const body = Buffer.concat(parts);
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt16BE(type, 0);
  header.writeUInt16BE(body.length + (withFingerprint ? 8 : 0), 2);
  header.writeUInt32BE(MAGIC_COOKIE, 4);
  header.set(txid, 8);
  const msg = Buffer.concat([header, body]);
  if (!withFingerprint) return msg;
  const fp = Buffer.alloc(8);
  fp.writeUInt16BE(ATTR_FINGERPRINT, 0);
  fp.writeUInt16BE(4, 2);
  fp.writeUInt32BE((crc32(msg) ^ 0x5354554e) >>> 0, 4);
  return Buffer.concat([msg, fp]);
}

/** Offsets at which a message built by `message()` may end: after the header and after each attribute. */
function boundaries(attributes: Attribute[], withFingerprint: boolean): number[] {
  const ends = [HEADER_SIZE];
  for (const { value } of attributes) ends.push((ends.at(-1) ?? 0) + 4 + ((value.length + 3) & ~3));
  if (withFingerprint) ends.push((ends.at(-1) ?? 0) + 8);
  return ends;
}

/** `msg` cut to `length` bytes with the header length patched to match (only framing can fail). */
function truncated(msg: Buffer, length: number): Buffer {
  const cut = Buffer.from(msg.subarray(0, length));
  if (length >= 4) cut.writeUInt16BE((length - HEADER_SIZE) & 0xffff, 2);
  return cut;
}

/**
 * The text a client should be told for `text`, from an independent parser: the WHATWG URL host
 * serializer (RFC 5952 compression; ipaddr.js cannot serve, it reads `::1.2.3.4` as IPv4-mapped).
 */
function expectedIp(text: string): string {
  if (!text.includes(':')) return new URL(`http://${text}/`).hostname;
  const host = new URL(`http://[${text}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (mapped === null) return host;
  const high = Number.parseInt(mapped[1] ?? '', 16);
  const low = Number.parseInt(mapped[2] ?? '', 16);
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

const attributeArb = fc.record({
  type: fc.integer({ min: 0, max: 0xffff }).filter((t) => t !== ATTR_FINGERPRINT),
  value: fc.uint8Array({ maxLength: 40 }),
});
const txidArb = fc.uint8Array({ minLength: 12, maxLength: 12 });
const ipArb = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV4().map((v4) => `::ffff:${v4}`),
);

describe('STUN binding request', () => {
  test('encodes exactly what tailscaled sends (doc vector)', () => {
    const request = encodeBindingRequest(TXID);
    assert.equal(request.length, BINDING_REQUEST_SIZE);
    assert.equal(BINDING_REQUEST_SIZE, 40);
    assert.equal(request.toString('hex'), TAILSCALED_REQUEST.toString('hex'));
  });

  test("parses tailscaled's request and copies the transaction ID", () => {
    const packet = Buffer.from(TAILSCALED_REQUEST);
    const parsed = parseBindingRequest(packet);
    assert.deepEqual(parsed?.transactionId, TXID);
    packet.fill(0);
    assert.deepEqual(parsed?.transactionId, TXID, 'the ID must not alias the receive buffer');
  });

  test('accepts a plain Uint8Array as well as a Buffer', () => {
    const bytes = new Uint8Array(64);
    bytes.set(TAILSCALED_REQUEST, 10);
    assert.deepEqual(parseBindingRequest(bytes.subarray(10, 50))?.transactionId, TXID);
  });

  test('is lenient like a generic STUN server: no SOFTWARE, other attributes, no FINGERPRINT', () => {
    const bare = message(BINDING_REQUEST, TXID, []);
    assert.equal(bare.length, 20);
    assert.deepEqual(parseBindingRequest(bare)?.transactionId, TXID);
    const other = message(BINDING_REQUEST, TXID, [
      { type: ATTR_SOFTWARE, value: Buffer.from('stunclient 1.0') }, // 14 bytes: 2 bytes of padding
      { type: 0x8029, value: Buffer.alloc(8, 7) }, // ICE-CONTROLLED
      { type: 0x0024, value: Buffer.alloc(4, 1) }, // PRIORITY
    ]);
    assert.deepEqual(parseBindingRequest(other)?.transactionId, TXID);
    const fingerprinted = message(
      BINDING_REQUEST,
      TXID,
      [{ type: 0x0006, value: Buffer.from('user') }],
      true,
    );
    assert.deepEqual(parseBindingRequest(fingerprinted)?.transactionId, TXID);
  });

  test('rejects anything that is not a well-formed Binding Request', () => {
    const valid = Buffer.from(TAILSCALED_REQUEST);
    const variant = (edit: (b: Buffer) => void): Buffer => {
      const copy = Buffer.from(valid);
      edit(copy);
      return copy;
    };
    const cases: Record<string, Buffer> = {
      empty: Buffer.alloc(0),
      'shorter than a header': valid.subarray(0, 19),
      'truncated attribute': valid.subarray(0, 36),
      'trailing byte': Buffer.concat([valid, Buffer.from([0])]),
      'top bits set': variant((b) => {
        b[0] = 0x40;
      }),
      'bad cookie': variant((b) => b.writeUInt32BE(0x2112a443, 4)),
      'binding response': variant((b) => b.writeUInt16BE(BINDING_SUCCESS, 0)),
      'binding indication': variant((b) => b.writeUInt16BE(0x0011, 0)),
      'allocate request': variant((b) => b.writeUInt16BE(0x0003, 0)),
      'length longer than datagram': variant((b) => b.writeUInt16BE(24, 2)),
      'length shorter than datagram': variant((b) => b.writeUInt16BE(16, 2)),
      'bad fingerprint': variant((b) => {
        b[39] = (b[39] ?? 0) ^ 1;
      }),
      'fingerprint over modified bytes': variant((b) => {
        b[24] = 0x54; // 'T'ailnode
      }),
      'fingerprint of wrong length': message(BINDING_REQUEST, TXID, [
        { type: ATTR_FINGERPRINT, value: Buffer.alloc(8) },
      ]),
      'fingerprint not last': (() => {
        // The fingerprint is correct for the bytes before it, but an attribute follows.
        const m = Buffer.concat([message(BINDING_REQUEST, TXID, []), hex('80280004 00000000 80220000')]);
        m.writeUInt16BE(12, 2);
        m.writeUInt32BE((crc32(m.subarray(0, 20)) ^ 0x5354554e) >>> 0, 24);
        return m;
      })(),
      'attribute overruns the message': variant((b) => b.writeUInt16BE(9, 22)),
      'attribute length past the end': variant((b) => b.writeUInt16BE(0xfff0, 34)),
      'unpadded attribute': (() => {
        const m = Buffer.concat([message(BINDING_REQUEST, TXID, []), hex('80220003 616263')]);
        m.writeUInt16BE(7, 2);
        return m;
      })(),
      'length not a multiple of 4': (() => {
        const m = Buffer.concat([message(BINDING_REQUEST, TXID, []), Buffer.alloc(2)]);
        m.writeUInt16BE(2, 2);
        return m;
      })(),
      'http request': Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      'dns query': hex('abcd01000001000000000000076578616d706c6503636f6d0000010001'),
    };
    for (const [name, packet] of Object.entries(cases)) {
      assert.equal(parseBindingRequest(packet), undefined, name);
    }
  });

  test('refuses to encode a transaction ID of the wrong size', () => {
    assert.throws(() => encodeBindingRequest(Buffer.alloc(11)), RangeError);
    assert.throws(() => encodeBindingResponse(Buffer.alloc(16), '1.2.3.4', 1), RangeError);
  });

  test('newTransactionId gives fresh 12-byte IDs', () => {
    const a = newTransactionId();
    assert.equal(a.length, 12);
    assert.notDeepEqual(a, newTransactionId());
  });
});

describe('STUN binding response', () => {
  test('encodes the doc vectors for IPv4 and IPv6', () => {
    assert.equal(
      encodeBindingResponse(TXID, '198.18.0.11', 41641).toString('hex'),
      RESPONSE_V4.toString('hex'),
    );
    assert.equal(
      encodeBindingResponse(TXID, '2001:db8::1', 41641).toString('hex'),
      RESPONSE_V6.toString('hex'),
    );
  });

  test('answers an IPv4-mapped IPv6 peer (dual-stack socket) as IPv4', () => {
    assert.deepEqual(encodeBindingResponse(TXID, '::ffff:198.18.0.11', 41641), RESPONSE_V4);
    assert.deepEqual(encodeBindingResponse(TXID, '::FFFF:c612:000b', 41641), RESPONSE_V4);
    assert.deepEqual(encodeBindingResponse(TXID, '0:0:0:0:0:ffff:198.18.0.11', 41641), RESPONSE_V4);
  });

  test('drops an IPv6 zone, refuses non-addresses and bad ports', () => {
    const linkLocal = encodeBindingResponse(TXID, 'fe80::1%eth0', 1);
    assert.deepEqual(parseBindingResponse(linkLocal), { ip: 'fe80::1', port: 1 });
    assert.throws(() => encodeBindingResponse(TXID, 'example.com', 1), TypeError);
    assert.throws(() => encodeBindingResponse(TXID, '1.2.3.256', 1), TypeError);
    assert.throws(() => encodeBindingResponse(TXID, '1.2.3.4', 65536), RangeError);
    assert.throws(() => encodeBindingResponse(TXID, '1.2.3.4', -1), RangeError);
    assert.throws(() => encodeBindingResponse(TXID, '1.2.3.4', 1.5), RangeError);
  });

  test('parses the doc vectors and checks the transaction ID when asked', () => {
    assert.deepEqual(parseBindingResponse(RESPONSE_V4, TXID), { ip: '198.18.0.11', port: 41641 });
    assert.deepEqual(parseBindingResponse(RESPONSE_V6, TXID), { ip: '2001:db8::1', port: 41641 });
    assert.deepEqual(parseBindingResponse(RESPONSE_V4), { ip: '198.18.0.11', port: 41641 });
    assert.equal(parseBindingResponse(RESPONSE_V4, Buffer.alloc(12)), undefined);
  });

  test('tolerates what tailscaled tolerates: 0x8020, plain MAPPED-ADDRESS, mapped IPv6', () => {
    const xorValue = RESPONSE_V4.subarray(24);
    assert.deepEqual(
      parseBindingResponse(
        message(BINDING_SUCCESS, TXID, [{ type: ATTR_XOR_MAPPED_ADDRESS_ALT, value: xorValue }]),
      ),
      { ip: '198.18.0.11', port: 41641 },
    );
    const plain = hex('0001 a2a9 c612000b'); // 198.18.0.11:41641, not XORed
    assert.deepEqual(
      parseBindingResponse(
        message(
          BINDING_SUCCESS,
          TXID,
          [
            { type: ATTR_SOFTWARE, value: Buffer.from('x') },
            { type: ATTR_MAPPED_ADDRESS, value: plain },
          ],
          true,
        ),
      ),
      { ip: '198.18.0.11', port: 41641 },
    );
    // XOR-MAPPED-ADDRESS wins over MAPPED-ADDRESS whatever the order.
    const other = hex('0001 0001 01020304');
    assert.deepEqual(
      parseBindingResponse(
        message(BINDING_SUCCESS, TXID, [
          { type: ATTR_MAPPED_ADDRESS, value: other },
          { type: ATTR_XOR_MAPPED_ADDRESS, value: xorValue },
        ]),
      ),
      { ip: '198.18.0.11', port: 41641 },
    );
    const mappedV6 = hex('0002 a2a9 00000000000000000000ffffc612000b');
    assert.deepEqual(
      parseBindingResponse(message(BINDING_SUCCESS, TXID, [{ type: ATTR_MAPPED_ADDRESS, value: mappedV6 }])),
      {
        ip: '198.18.0.11',
        port: 41641,
      },
    );
  });

  test('rejects responses without a usable address or with broken framing', () => {
    const cases: Record<string, Buffer> = {
      'no attributes': message(BINDING_SUCCESS, TXID, []),
      'a request, not a response': TAILSCALED_REQUEST,
      'error response': Buffer.from(RESPONSE_V4).fill(0x11, 1, 2),
      'IPv4 family with IPv6 length': message(BINDING_SUCCESS, TXID, [
        { type: ATTR_XOR_MAPPED_ADDRESS, value: Buffer.concat([hex('0001 0000'), Buffer.alloc(16)]) },
      ]),
      'IPv6 family with IPv4 length': message(BINDING_SUCCESS, TXID, [
        { type: ATTR_XOR_MAPPED_ADDRESS, value: hex('0002 0000 00000000') },
      ]),
      'unknown family': message(BINDING_SUCCESS, TXID, [
        { type: ATTR_XOR_MAPPED_ADDRESS, value: hex('0003 0000 00000000') },
      ]),
      truncated: RESPONSE_V6.subarray(0, 40),
      'bad fingerprint': (() => {
        const m = message(
          BINDING_SUCCESS,
          TXID,
          [{ type: ATTR_XOR_MAPPED_ADDRESS, value: RESPONSE_V4.subarray(24) }],
          true,
        );
        m[m.length - 1] = (m[m.length - 1] ?? 0) ^ 0xff;
        return m;
      })(),
    };
    for (const [name, packet] of Object.entries(cases)) {
      assert.equal(parseBindingResponse(packet), undefined, name);
    }
  });
});

describe('STUN codec properties', () => {
  test('random bytes never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        parseBindingRequest(bytes);
        parseBindingResponse(bytes);
        parseBindingResponse(bytes, TXID);
      }),
      { numRuns: 2000 },
    );
  });

  test('random attribute bytes behind a valid header never throw', () => {
    // A random datagram almost never gets past the header; this one always does.
    fc.assert(
      fc.property(
        fc.constantFrom(BINDING_REQUEST, BINDING_SUCCESS),
        fc.uint8Array({ maxLength: 50 }).map((b) => b.subarray(0, b.length & ~3)),
        (type, body) => {
          const msg = Buffer.concat([message(type, TXID, []), body]);
          msg.writeUInt16BE(body.length, 2);
          const request = parseBindingRequest(msg);
          if (request !== undefined) assert.deepEqual(request.transactionId, TXID);
          parseBindingResponse(msg, TXID);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('a request with random attributes parses; cut anywhere it parses exactly at attribute boundaries', () => {
    fc.assert(
      fc.property(
        fc.array(attributeArb, { maxLength: 5 }),
        fc.boolean(),
        txidArb,
        (attributes, withFp, txid) => {
          const msg = message(BINDING_REQUEST, txid, attributes, withFp);
          assert.deepEqual(parseBindingRequest(msg)?.transactionId, Buffer.from(txid));
          const ends = new Set(boundaries(attributes, withFp));
          for (let length = 0; length < msg.length; length++) {
            // Plain truncation: the header length no longer matches.
            assert.equal(parseBindingRequest(msg.subarray(0, length)), undefined);
            // Truncation with a patched header: only whole attributes make a valid (shorter) request.
            const parsed = parseBindingRequest(truncated(msg, length));
            if (ends.has(length))
              assert.deepEqual(parsed?.transactionId, Buffer.from(txid), `cut at ${length}`);
            else assert.equal(parsed, undefined, `cut at ${length}`);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test('any flipped bit in a fingerprinted request is caught', () => {
    // Except in the FINGERPRINT's own type (bytes 32-33): that turns it into an unknown attribute, and
    // a request without a fingerprint is fine.
    const bits = fc.integer({ min: 0, max: BINDING_REQUEST_SIZE * 8 - 1 }).filter((b) => b >> 4 !== 16);
    fc.assert(
      fc.property(bits, txidArb, (bit, txid) => {
        const request = encodeBindingRequest(txid);
        request[bit >> 3] = (request[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        assert.equal(parseBindingRequest(request), undefined);
      }),
    );
  });

  test('request round trip for random transaction IDs', () => {
    fc.assert(
      fc.property(txidArb, (txid) => {
        const request = encodeBindingRequest(txid);
        assert.equal(request.length, 40);
        assert.deepEqual(parseBindingRequest(request)?.transactionId, Buffer.from(txid));
      }),
    );
  });

  test('response round trip for random IPv4/IPv6 addresses and ports', () => {
    fc.assert(
      fc.property(txidArb, ipArb, fc.integer({ min: 0, max: 0xffff }), (txid, ip, port) => {
        const response = encodeBindingResponse(txid, ip, port);
        const want = expectedIp(ip);
        assert.equal(response.length, want.includes(':') ? 44 : 32);
        assert.equal(response.readUInt16BE(2), response.length - HEADER_SIZE);
        assert.deepEqual(parseBindingResponse(response, txid), { ip: want, port });
      }),
      { numRuns: 1000 },
    );
  });
});
