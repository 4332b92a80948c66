import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  isAutoDerivedGivenName,
  labelProblem,
  sanitizeHostname,
  sanitizeLabel,
  trimCommonSuffixes,
  uniqueGivenName,
} from './dnsname.ts';

describe('sanitizeHostname', () => {
  test('the examples of features.md §1.2', () => {
    const table: [string, string][] = [
      ["Joe's Mac mini", 'joes-mac-mini'],
      ['Test@Host', 'test-host'],
      ['mail.server', 'mail-server'],
      ['My-PC!', 'my-pc'],
      ['我的电脑', 'node'],
      ['build01.local', 'build01'],
    ];
    for (const [hostname, given] of table) assert.equal(sanitizeHostname(hostname), given, hostname);
  });

  test('suffixes are stripped in the order .local, .localdomain, .lan, each once and case-sensitively', () => {
    assert.equal(trimCommonSuffixes('box.lan.localdomain'), 'box');
    assert.equal(trimCommonSuffixes('box.local.lan'), 'box.local');
    assert.equal(trimCommonSuffixes('box.local.local'), 'box.local');
    assert.equal(sanitizeHostname('Build01.LOCAL'), 'build01-local');
    assert.equal(sanitizeHostname('.local'), 'node');
  });

  test('edges: truncation before trimming, separators at the ends, non-ASCII bytes', () => {
    assert.equal(sanitizeHostname('a'.repeat(70)), 'a'.repeat(63));
    // Truncation counts UTF-8 bytes, before non-ASCII bytes are dropped.
    assert.equal(sanitizeHostname(`${'é'.repeat(30)}abcdef`), 'abc');
    assert.equal(sanitizeLabel('--web_01--'), 'web-01');
    assert.equal(sanitizeLabel('_a b_'), 'a-b');
    assert.equal(sanitizeLabel('café au lait'), 'caf-au-lait');
    assert.equal(sanitizeLabel(''), '');
    assert.equal(sanitizeHostname(''), 'node');
    assert.equal(sanitizeHostname('a  b'), 'a--b');
  });

  test('the result is always a valid label', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.stringMatching(/^[ -~]{0,80}$/)),
        (name) => {
          assert.equal(labelProblem(sanitizeHostname(name)), undefined);
        },
      ),
    );
  });
});

test('labelProblem', () => {
  assert.equal(labelProblem('laptop-2'), undefined);
  assert.equal(labelProblem('a'.repeat(63)), undefined);
  assert.match(labelProblem('') ?? '', /empty/);
  assert.match(labelProblem('a'.repeat(64)) ?? '', /at most 63/);
  assert.match(labelProblem('Laptop') ?? '', /lowercase/);
  assert.match(labelProblem('a.b') ?? '', /lowercase letters, digits and "-"/);
  assert.match(labelProblem('-a') ?? '', /start or end/);
  assert.match(labelProblem('a-') ?? '', /start or end/);
});

describe('uniqueGivenName', () => {
  test('base, then base-1, base-2, …', () => {
    const taken = new Set<string>();
    const names = Array.from({ length: 4 }, () => {
      const name = uniqueGivenName('laptop', (n) => taken.has(n));
      taken.add(name);
      return name;
    });
    assert.deepEqual(names, ['laptop', 'laptop-1', 'laptop-2', 'laptop-3']);
  });

  test('a long base is shortened so the suffix fits in 63 characters', () => {
    const base = 'a'.repeat(63);
    const name = uniqueGivenName(base, (n) => n === base || n === `${'a'.repeat(61)}-1`);
    assert.equal(name, `${'a'.repeat(61)}-2`);
    assert.equal(name.length, 63);
  });
});

test('isAutoDerivedGivenName', () => {
  assert.equal(isAutoDerivedGivenName('laptop', 'Laptop'), true);
  assert.equal(isAutoDerivedGivenName('laptop-3', 'laptop.local'), true);
  assert.equal(isAutoDerivedGivenName('joes-mac-mini-12', "Joe's Mac mini"), true);
  assert.equal(isAutoDerivedGivenName('node-1', '我的电脑'), true);
  assert.equal(isAutoDerivedGivenName('laptop-x', 'laptop'), false);
  assert.equal(isAutoDerivedGivenName('laptop-', 'laptop'), false);
  assert.equal(isAutoDerivedGivenName('work', 'laptop'), false);
  assert.equal(isAutoDerivedGivenName('lap-1', 'laptop'), false);
  // A long name shortened to make room for its collision suffix still counts as derived.
  assert.equal(isAutoDerivedGivenName(`${'a'.repeat(60)}-12`, 'a'.repeat(80)), true);
  assert.equal(isAutoDerivedGivenName(`${'a'.repeat(59)}-12`, 'a'.repeat(80)), false);
});
