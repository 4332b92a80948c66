import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  groupsClaim,
  identityFrom,
  isVerified,
  type OidcIdentity,
  type OidcRules,
  providerIdOf,
  refusalFor,
  trustedEmail,
  wantedUserName,
} from './oidc-claims.ts';

function identity(fields: Partial<OidcIdentity> = {}): OidcIdentity {
  return {
    providerId: 'https://idp.example.com/sub-1',
    issuer: 'https://idp.example.com',
    subject: 'sub-1',
    email: 'alice@example.com',
    emailVerified: true,
    preferredUsername: 'alice',
    name: 'Alice',
    picture: '',
    groups: [],
    ...fields,
  };
}

const OPEN: OidcRules = {
  allowed_domains: [],
  allowed_users: [],
  allowed_groups: [],
  email_verified_required: true,
};

describe('claim normalisation', () => {
  test('email_verified: true and "true" (any case) count, everything else does not', () => {
    const cases: Array<[unknown, boolean]> = [
      [true, true],
      ['true', true],
      ['TRUE', true],
      [' true ', true],
      [false, false],
      ['false', false],
      ['yes', false],
      [1, false],
      [undefined, false],
      [null, false],
    ];
    for (const [value, expected] of cases) assert.equal(isVerified(value), expected, String(value));
  });

  test('groups: an array or a single string; non-strings, blanks and duplicates dropped', () => {
    const cases: Array<[unknown, string[]]> = [
      [
        ['a', 'b'],
        ['a', 'b'],
      ],
      ['admins', ['admins']],
      [
        ['a', 'a', ' b ', '', 3, null],
        ['a', 'b'],
      ],
      [undefined, []],
      [{ a: 1 }, []],
      ['', []],
    ];
    for (const [value, expected] of cases)
      assert.deepEqual(groupsClaim(value), expected, JSON.stringify(value));
  });

  test('groups are bounded in number and length', () => {
    assert.equal(groupsClaim(Array.from({ length: 1000 }, (_, i) => `g${i}`)).length, 256);
    assert.deepEqual(groupsClaim(['x'.repeat(513), 'ok']), ['ok']);
  });

  test('the provider id is the issuer without trailing slashes, then the subject', () => {
    assert.equal(providerIdOf('https://idp.example.com/', 'abc'), 'https://idp.example.com/abc');
    assert.equal(
      providerIdOf('https://idp.example.com/realms/x//', 'abc'),
      'https://idp.example.com/realms/x/abc',
    );
  });

  test('userinfo values win over the ID token; the token fills what userinfo lacks', () => {
    const fromToken = identityFrom(
      { iss: 'https://idp/', sub: 's', email: 'old@example.com', name: 'Token Name', groups: 'g1' },
      { sub: 's', email: 'new@example.com', email_verified: 'true' },
    );
    assert.equal(fromToken.providerId, 'https://idp/s');
    assert.equal(fromToken.email, 'new@example.com');
    assert.equal(fromToken.emailVerified, true);
    assert.equal(fromToken.name, 'Token Name');
    assert.deepEqual(fromToken.groups, ['g1']);

    const tokenOnly = identityFrom(
      { iss: 'https://idp', sub: 's', email: 'a@example.com', email_verified: true, preferred_username: 'a' },
      undefined,
    );
    assert.equal(tokenOnly.email, 'a@example.com');
    assert.equal(tokenOnly.emailVerified, true);
    assert.equal(tokenOnly.preferredUsername, 'a');
    assert.deepEqual(tokenOnly.groups, []);
  });

  test('claims of the wrong type or absurd length are treated as absent', () => {
    const odd = identityFrom(
      { iss: 'https://idp', sub: 's', email: 42, name: 'n'.repeat(600), picture: ['x'] },
      undefined,
    );
    assert.equal(odd.email, '');
    assert.equal(odd.name, '');
    assert.equal(odd.picture, '');
  });
});

describe('authorisation rules', () => {
  const cases: Array<[string, Partial<OidcIdentity>, Partial<OidcRules>, RegExp | undefined]> = [
    ['no lists: everyone', { email: '', emailVerified: false }, {}, undefined],
    ['group listed', { groups: ['eng', 'vpn'] }, { allowed_groups: ['vpn'] }, undefined],
    ['group not listed', { groups: ['eng'] }, { allowed_groups: ['vpn'] }, /not in any of the groups/],
    ['no groups claim', {}, { allowed_groups: ['vpn'] }, /not in any of the groups/],
    ['groups compare exactly', { groups: ['VPN'] }, { allowed_groups: ['vpn'] }, /not in any of the groups/],
    ['domain listed', {}, { allowed_domains: ['example.com'] }, undefined],
    ['domain ignores case', { email: 'Alice@Example.COM' }, { allowed_domains: ['example.com'] }, undefined],
    ['other domain', { email: 'alice@other.org' }, { allowed_domains: ['example.com'] }, /domain other\.org/],
    [
      'subdomain is another domain',
      { email: 'a@eu.example.com' },
      { allowed_domains: ['example.com'] },
      /domain eu\.example\.com/,
    ],
    ['user listed', {}, { allowed_users: ['alice@example.com'] }, undefined],
    [
      'user ignores case',
      { email: 'ALICE@example.com' },
      { allowed_users: ['alice@example.com'] },
      undefined,
    ],
    [
      'user not listed',
      { email: 'bob@example.com' },
      { allowed_users: ['alice@example.com'] },
      /bob@example\.com may not/,
    ],
    [
      'unverified with a list',
      { emailVerified: false },
      { allowed_domains: ['example.com'] },
      /not verified/,
    ],
    [
      'unverified allowed when not required',
      { emailVerified: false },
      { allowed_domains: ['example.com'], email_verified_required: false },
      undefined,
    ],
    ['unverified without lists is fine', { emailVerified: false }, {}, undefined],
    [
      'no e-mail with a list',
      { email: '' },
      { allowed_users: ['alice@example.com'] },
      /did not share an e-mail/,
    ],
    [
      'every list must pass',
      { groups: ['vpn'], email: 'alice@example.com' },
      { allowed_groups: ['vpn'], allowed_domains: ['example.com'], allowed_users: ['bob@example.com'] },
      /alice@example\.com may not/,
    ],
  ];
  for (const [name, who, rules, expected] of cases) {
    test(name, () => {
      const refusal = refusalFor(identity(who), { ...OPEN, ...rules });
      if (expected === undefined) assert.equal(refusal, undefined);
      else assert.match(refusal ?? '(allowed)', expected);
    });
  }
});

describe('what is recorded', () => {
  test('an unverified e-mail is recorded only when verification is not required', () => {
    assert.equal(trustedEmail(identity({ emailVerified: false }), true), '');
    assert.equal(trustedEmail(identity({ emailVerified: false }), false), 'alice@example.com');
    assert.equal(trustedEmail(identity(), true), 'alice@example.com');
  });

  test('the wanted user name: preferred_username, else e-mail, else from the subject', () => {
    assert.equal(wantedUserName(identity(), 'alice@example.com'), 'alice');
    assert.equal(
      wantedUserName(identity({ preferredUsername: '' }), 'alice@example.com'),
      'alice@example.com',
    );
    assert.equal(
      wantedUserName(identity({ preferredUsername: 'has space' }), 'a@example.com'),
      'a@example.com',
    );
    assert.equal(wantedUserName(identity({ preferredUsername: '', subject: 'a|b 1' }), ''), 'oidc-ab1');
  });
});
