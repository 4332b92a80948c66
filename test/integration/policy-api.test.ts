/**
 * The policy as an admin manages it: `weft policy get | set | check` and `/api/v1/policy` on a real
 * server (database mode, versions with author and time, ETag/If-Match), the policy file mode (reloaded
 * on change and SIGHUP, a broken file keeps the last good policy), and the offline check. A refused
 * policy must say why, with line and column or the failing tests, and change nothing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { CommandResult } from '../harness/child.ts';
import { eventually } from '../harness/wait.ts';
import { runWeft, startWeft, type WeftServer } from '../harness/weft.ts';

function ok(result: CommandResult): string {
  assert.equal(result.code, 0, `exit ${result.code}; stderr: ${result.stderr}`);
  return result.stdout;
}

function failed(result: CommandResult, message: RegExp): void {
  assert.equal(result.code, 1, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
  assert.match(result.stderr, message);
  assert.equal(result.stdout, '');
}

const GOOD = `// only alice reaches the web servers
{
  "groups": { "group:eng": ["alice@example.com"] },
  "tagOwners": { "tag:web": ["group:eng"] },
  "acls": [
    { "action": "accept", "src": ["group:eng"], "dst": ["tag:web:443"] },
    { "action": "accept", "src": ["100.64.0.1"], "dst": ["100.64.0.2:22"] }, // trailing comma next
  ],
  "tests": [{ "src": "100.64.0.1", "accept": ["100.64.0.2:22"] }],
}
`;
/** Same rules, but its test fails: 100.64.0.9 may not reach anything. */
const FAILING_TESTS = `{
  "acls": [{ "action": "accept", "src": ["100.64.0.1"], "dst": ["*:*"] }],
  "tests": [{ "src": "100.64.0.9", "accept": ["100.64.0.2:80"] }],
}`;
/** Line 3 names a group nobody defined. */
const UNDEFINED_GROUP = `{
  "acls": [
    { "action": "accept", "src": ["group:nobody"], "dst": ["*:*"] },
  ],
}`;
const BROKEN_SYNTAX = `{
  "acls": [
    { "action": "accept" "src": ["*"], "dst": ["*:*"] },
  ],
}`;

describe('weft policy in database mode', () => {
  let weft: WeftServer;
  let dir: string;
  let apiKey: string;
  const file = (name: string) => join(dir, name);
  const getPolicy = async () => JSON.parse(ok(await weft.cli(['policy', 'get', '-o', 'json'])));

  before(async () => {
    weft = await startWeft();
    dir = await mkdtemp(join(tmpdir(), 'weft-policy-'));
    await writeFile(file('good.hujson'), GOOD);
    await writeFile(file('failing.hujson'), FAILING_TESTS);
    await writeFile(file('undefined-group.hujson'), UNDEFINED_GROUP);
    await writeFile(file('broken.hujson'), BROKEN_SYNTAX);
    apiKey = ok(await weft.cli(['apikeys', 'create', '--expiration', '1h'])).trim();
  });
  after(async () => {
    await weft?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('before anything is set, the built-in allow-all policy is in force (version 0)', async () => {
    const current = await getPolicy();
    assert.equal(current.version, 0);
    assert.equal(current.mode, 'database');
    assert.equal(current.author, null);
    assert.equal(current.updatedAt, null);
    assert.match(current.policy, /"acls"/);
    const res = await fetch(`${weft.url}/api/v1/policy`, { headers: { authorization: `Bearer ${apiKey}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('etag') ?? '', /^"[0-9a-f]{32}"$/);
  });

  test('policy set stores a new version with who and when; policy get prints it verbatim', async () => {
    const before = Date.now();
    assert.match(ok(await weft.cli(['policy', 'set', file('good.hujson')])), /^Policy updated: version 1, /);
    assert.equal(ok(await weft.cli(['policy', 'get'])), GOOD);
    const current = await getPolicy();
    assert.equal(current.version, 1);
    assert.equal(current.author, 'local admin');
    assert.ok(Date.parse(current.updatedAt) >= before - 1000);
  });

  test('an invalid policy is refused with its line and column, and nothing changes', async () => {
    const before = await getPolicy();
    failed(
      await weft.cli(['policy', 'set', file('undefined-group.hujson')]),
      /group not defined in policy: "group:nobody" \(line 3, column \d+\)/,
    );
    failed(await weft.cli(['policy', 'set', file('broken.hujson')]), /\(line 3, column \d+\)/);
    assert.deepEqual(await getPolicy(), before);
  });

  test('a policy whose tests fail is refused naming the failing test, and nothing changes', async () => {
    const before = await getPolicy();
    const result = await weft.cli(['policy', 'set', file('failing.hujson')]);
    failed(result, /test\(s\) failed/);
    assert.match(result.stderr, /test at line 3.*100\.64\.0\.9 cannot reach 100\.64\.0\.2:80/);
    assert.deepEqual(await getPolicy(), before);
  });

  test('the API: author is the API key, If-Match guards against lost updates, errors are structured', async () => {
    const auth = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
    const read = await fetch(`${weft.url}/api/v1/policy`, { headers: auth });
    const etag = read.headers.get('etag') ?? '';
    const put = (policy: string, headers: Record<string, string> = {}) =>
      fetch(`${weft.url}/api/v1/policy`, {
        method: 'PUT',
        headers: { ...auth, ...headers },
        body: JSON.stringify({ policy }),
      });

    const invalid = await put(UNDEFINED_GROUP);
    assert.equal(invalid.status, 400);
    const problem = (await invalid.json()) as { code: string; line: number; column: number };
    assert.equal(problem.code, 'POLICY_INVALID');
    assert.equal(problem.line, 3);
    assert.equal(typeof problem.column, 'number');

    const tests = await put(FAILING_TESTS);
    assert.equal(tests.status, 400);
    const testsProblem = (await tests.json()) as { code: string; failures: string[] };
    assert.equal(testsProblem.code, 'POLICY_TESTS_FAILED');
    assert.equal(testsProblem.failures.length, 1);

    const updated = await put(`${GOOD}\n// v2\n`, { 'if-match': etag });
    assert.equal(updated.status, 200, await updated.clone().text());
    const body = (await updated.json()) as { version: number; author: string };
    assert.equal(body.version, 2);
    assert.match(body.author, /^apikey:[0-9a-f]+$/);
    assert.notEqual(updated.headers.get('etag'), etag);

    const stale = await put(GOOD, { 'if-match': etag });
    assert.equal(stale.status, 412);
    assert.equal(((await stale.json()) as { code: string }).code, 'POLICY_CHANGED');
    assert.equal((await getPolicy()).version, 2);

    const huge = await put(`{"acls": [], "x": "${'a'.repeat(1_100_000)}"}`);
    assert.equal(huge.status, 413);
    const wrongShape = await fetch(`${weft.url}/api/v1/policy`, {
      method: 'PUT',
      headers: auth,
      body: JSON.stringify({ policy: GOOD, extra: 1 }),
    });
    assert.equal(wrongShape.status, 400);
    const anonymous = await fetch(`${weft.url}/api/v1/policy`);
    assert.equal(anonymous.status, 401);
    assert.equal((await getPolicy()).version, 2);
  });

  test('policy check asks the server and never applies anything', async () => {
    const before = await getPolicy();
    assert.match(
      ok(await weft.cli(['policy', 'check', file('good.hujson')])),
      /valid; 1 test\(s\) passed against the live tailnet/,
    );
    failed(await weft.cli(['policy', 'check', file('failing.hujson')]), /test\(s\) failed/);
    assert.deepEqual(await getPolicy(), before);
  });
});

describe('weft policy check without a server', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weft-policy-offline-'));
    await writeFile(join(dir, 'good.hujson'), GOOD);
    await writeFile(join(dir, 'broken.hujson'), BROKEN_SYNTAX);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('validates and runs the tests offline', async () => {
    const env = { WEFT_DATA_DIR: join(dir, 'data') };
    assert.match(
      ok(await runWeft(['policy', 'check', join(dir, 'good.hujson')], env)),
      /1 test\(s\) passed \(offline/,
    );
    failed(await runWeft(['policy', 'check', join(dir, 'broken.hujson')], env), /line 3, column/);
    failed(await runWeft(['policy', 'check', join(dir, 'missing.hujson')], env), /cannot read/);
  });
});

describe('weft policy in file mode', () => {
  let weft: WeftServer;
  let dir: string;
  let path: string;
  const getPolicy = async () => JSON.parse(ok(await weft.cli(['policy', 'get', '-o', 'json'])));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weft-policy-file-'));
    path = join(dir, 'policy.hujson');
    await writeFile(path, GOOD);
    weft = await startWeft({ env: { WEFT_POLICY_MODE: 'file', WEFT_POLICY_PATH: path } });
  });
  after(async () => {
    await weft?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('serves the file; set is refused with a pointer to the file', async () => {
    const current = await getPolicy();
    assert.equal(current.mode, 'file');
    assert.equal(current.policy, GOOD);
    const result = await weft.cli(['policy', 'set', path]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /policy\.mode: file.*edit that file/);
  });

  test('an edit is picked up by itself; a broken edit keeps the last good policy and logs why', async () => {
    const edited = `${GOOD}// edited\n`;
    await writeFile(path, edited);
    await eventually(
      'the edit is in force',
      async () => ((await getPolicy()).policy === edited ? true : undefined),
      {
        timeoutMs: 5_000,
      },
    );

    await writeFile(path, UNDEFINED_GROUP);
    await weft.waitForLog(
      (e) => e.msg === 'the policy file is invalid; the last good policy stays in force',
      5_000,
    );
    assert.equal((await getPolicy()).policy, edited);
    const refusal = weft.logEntries().find((e) => e.msg?.startsWith('the policy file is invalid'));
    assert.match(String(refusal?.problem), /group:nobody.*line 3/);
  });

  test('SIGHUP reloads the file and does not stop the server', async () => {
    const reloads = () => weft.logEntries().filter((e) => e.msg === 'policy file reloaded').length;
    const before = reloads();
    await writeFile(path, GOOD);
    await eventually('the file is reloaded', () => (reloads() > before ? true : undefined), {
      timeoutMs: 5_000,
    });
    weft.signal('SIGHUP');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal((await getPolicy()).policy, GOOD, 'still serving after SIGHUP');
  });

  test('a missing or broken policy file stops start-up with the reason', async () => {
    const missing = await runWeft(['serve'], {
      WEFT_DATA_DIR: join(dir, 'data2'),
      WEFT_LISTEN_ADDR: '127.0.0.1:0',
      WEFT_STUN_LISTEN_ADDR: '127.0.0.1:0',
      WEFT_POLICY_MODE: 'file',
      WEFT_POLICY_PATH: join(dir, 'nope.hujson'),
    });
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr + missing.stdout, /cannot read the policy file .*nope\.hujson/);
    const brokenPath = join(dir, 'broken.hujson');
    await writeFile(brokenPath, BROKEN_SYNTAX);
    const broken = await runWeft(['serve'], {
      WEFT_DATA_DIR: join(dir, 'data3'),
      WEFT_LISTEN_ADDR: '127.0.0.1:0',
      WEFT_STUN_LISTEN_ADDR: '127.0.0.1:0',
      WEFT_POLICY_MODE: 'file',
      WEFT_POLICY_PATH: brokenPath,
    });
    assert.notEqual(broken.code, 0);
    assert.match(broken.stderr + broken.stdout, /policy file .*broken\.hujson is invalid.*line 3/);
  });
});
