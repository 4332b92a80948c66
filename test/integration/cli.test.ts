/**
 * The CLI and `weft serve` as an admin runs them: real processes through bin/weft, a real SQLite file,
 * the admin socket, remote mode with an API key, and PostgreSQL. Every refused command must say one
 * sentence on stderr, exit non-zero and leave the data as it was.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { NewNode } from '../../src/db/repos/nodes.ts';
import { openStore } from '../../src/db/store.ts';
import { MachinePublic, NodePublic, PrivateKey } from '../../src/types/keys.ts';
import type { CommandResult } from '../harness/child.ts';
import { startPostgres } from '../harness/postgres.ts';
import { seedNode } from '../harness/seed.ts';
import { runWeft, startWeft, type WeftServer } from '../harness/weft.ts';

const KEY = /^weft-auth-[0-9a-f]{12}-[0-9a-f]{64}$/;

function ok(result: CommandResult): string {
  assert.equal(result.code, 0, `exit ${result.code}; stderr: ${result.stderr}`);
  return result.stdout;
}

/** Refused: the given exit code and exactly one line on stderr matching `message`. */
function refused(
  result: CommandResult,
  code: number,
  message: RegExp,
  options: { logsOnStdout?: boolean } = {},
): void {
  assert.equal(result.code, code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${result.stderr}`);
  assert.match(lines[0] ?? '', message);
  // `serve` logs to stdout before it fails; every other command prints nothing when refused.
  if (!options.logsOnStdout) assert.equal(result.stdout, '');
}

describe('weft CLI against a running server (SQLite)', () => {
  let weft: WeftServer;
  /** A snapshot of everything the CLI can list, to prove refused commands change nothing. */
  const snapshot = async () =>
    JSON.stringify([
      JSON.parse(ok(await weft.cli(['users', 'list', '-o', 'json']))),
      JSON.parse(ok(await weft.cli(['preauthkeys', 'list', '-o', 'json']))),
      JSON.parse(ok(await weft.cli(['apikeys', 'list', '-o', 'json']))),
    ]);

  before(async () => {
    weft = await startWeft();
  });
  after(async () => {
    await weft?.stop();
  });

  test('health answers on listen_addr', async () => {
    const res = await fetch(`${weft.url}/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'pass', checks: { database: { status: 'pass' } } });
  });

  test('the admin socket and the database are private to the server user', async () => {
    assert.equal((await stat(weft.socketPath)).mode & 0o777, 0o600);
    assert.equal((await stat(join(weft.dataDir, 'weft.db'))).mode & 0o777, 0o600);
    assert.equal((await stat(weft.dataDir)).mode & 0o777, 0o700);
  });

  test('users create / list / rename / delete', async () => {
    assert.equal(
      ok(await weft.cli(['users', 'create', 'alice', '--email', 'alice@example.com'])),
      'User "alice" created (id 1)\n',
    );
    const users = JSON.parse(ok(await weft.cli(['users', 'list', '-o', 'json'])));
    assert.deepEqual(
      users.map((u: { name: string; email: string }) => [u.name, u.email]),
      [['alice', 'alice@example.com']],
    );
    const table = ok(await weft.cli(['users', 'list']));
    assert.match(
      table,
      /^ID\s+NAME\s+DISPLAY NAME\s+EMAIL\s+CREATED\n1\s+alice\s+alice@example\.com\s+\d{4}-/,
    );

    ok(await weft.cli(['users', 'create', 'bob']));
    assert.equal(
      ok(await weft.cli(['users', 'rename', 'bob', 'robert'])),
      'User "bob" renamed to "robert"\n',
    );
    assert.equal(ok(await weft.cli(['users', 'delete', 'robert'])), 'User "robert" deleted\n');
    assert.deepEqual(
      JSON.parse(ok(await weft.cli(['users', 'list', '-o', 'json']))).map((u: { name: string }) => u.name),
      ['alice'],
    );
  });

  test('preauthkeys create prints only the key; list and expire by prefix', async () => {
    const created = ok(
      await weft.cli(['preauthkeys', 'create', '--user', 'alice', '--reusable', '--expiration', '1h']),
    );
    const key = created.trimEnd();
    assert.match(key, KEY);
    assert.equal(created, `${key}\n`, 'nothing but the key on stdout');

    const listed = JSON.parse(ok(await weft.cli(['preauthkeys', 'list', '--user', 'alice', '-o', 'json'])));
    const mine = listed.find((k: { prefix: string }) => key.startsWith(k.prefix));
    assert.ok(mine);
    assert.equal(mine.reusable, true);
    assert.equal(mine.user.name, 'alice');
    const expiresIn = new Date(mine.expiration).getTime() - Date.now();
    assert.ok(expiresIn > 55 * 60_000 && expiresIn <= 60 * 60_000, `expires in ${expiresIn} ms`);
    assert.ok(!JSON.stringify(listed).includes(key), 'the key is never listed');

    const tagged = JSON.parse(
      ok(
        await weft.cli([
          'preauthkeys',
          'create',
          '--user',
          'alice',
          '--ephemeral',
          '--tags',
          'tag:ci,tag:web',
          '-o',
          'json',
        ]),
      ),
    );
    assert.match(tagged.key, KEY);
    assert.deepEqual(tagged.aclTags, ['tag:ci', 'tag:web']);
    assert.equal(tagged.ephemeral, true);

    assert.equal(
      ok(await weft.cli(['preauthkeys', 'expire', mine.prefix])),
      `Pre-auth key ${mine.prefix} expired\n`,
    );
    assert.match(ok(await weft.cli(['preauthkeys', 'list'])), /\(expired\)/);
  });

  test('bad input: one sentence on stderr, non-zero exit, nothing changed', async () => {
    const expiredKey = JSON.parse(ok(await weft.cli(['preauthkeys', 'list', '-o', 'json']))).find(
      (k: { expiration: string }) => new Date(k.expiration) <= new Date(),
    );
    assert.ok(expiredKey, 'the previous test expired a key');
    const before = await snapshot();

    refused(
      await weft.cli(['users', 'create', 'carol', '--colour', 'red']),
      2,
      /^error: unknown option '--colour'/,
    );
    refused(await weft.cli(['users', 'frobnicate']), 2, /^error: unknown command 'frobnicate'/);
    refused(await weft.cli(['users', 'create']), 2, /^error: missing required argument 'name'/);
    refused(await weft.cli(['users', 'create', 'alice']), 1, /^error: a user named "alice" already exists$/);
    refused(
      await weft.cli(['users', 'create', 'no spaces']),
      1,
      /^error: invalid request body\.name: a user name/,
    );
    refused(await weft.cli(['users', 'delete', 'nobody']), 1, /^error: there is no user named "nobody"$/);
    refused(
      await weft.cli(['users', 'rename', 'nobody', 'x']),
      1,
      /^error: there is no user named "nobody"$/,
    );
    refused(
      await weft.cli(['preauthkeys', 'create', '--user', 'nobody']),
      1,
      /^error: there is no user named "nobody"$/,
    );
    refused(
      await weft.cli(['preauthkeys', 'create']),
      2,
      /^error: required option '-u, --user <name>' not specified$/,
    );
    refused(
      await weft.cli(['preauthkeys', 'create', '--user', 'alice', '--expiration', 'soon']),
      2,
      /not a valid duration/,
    );
    refused(
      await weft.cli(['preauthkeys', 'create', '--user', 'alice', '--expiration', '0s']),
      2,
      /longer than zero/,
    );
    refused(await weft.cli(['apikeys', 'create', '--expiration', '100000000d']), 2, /at most 100 years/);
    refused(
      await weft.cli(['preauthkeys', 'create', '--user', 'alice', '--tags', 'server']),
      2,
      /tags start with "tag:"/,
    );
    refused(
      await weft.cli(['preauthkeys', 'expire', expiredKey.prefix]),
      1,
      /^error: pre-auth key weft-auth-[0-9a-f]{12} has already expired$/,
    );
    refused(
      await weft.cli(['preauthkeys', 'expire', 'weft-auth-000000000000']),
      1,
      /^error: no pre-auth key has the prefix "000000000000"$/,
    );
    refused(await weft.cli(['preauthkeys', 'expire', 'not-a-key']), 1, /is not a pre-auth key prefix/);
    refused(await weft.cli(['preauthkeys', 'list', '-o', 'yaml']), 2, /argument 'yaml' is invalid/);
    refused(await weft.cli(['users', 'list', '--api-key', 'x']), 2, /only used together with --server/);

    assert.equal(await snapshot(), before);
  });

  test('a user who still owns a node cannot be deleted', async () => {
    ok(await weft.cli(['users', 'create', 'dave']));
    const dave = JSON.parse(ok(await weft.cli(['users', 'list', '-o', 'json']))).find(
      (u: { name: string }) => u.name === 'dave',
    );
    // Nodes arrive through the control protocol (next issue); until then the test writes one directly.
    const { store } = await openStore({ type: 'sqlite', path: join(weft.dataDir, 'weft.db') });
    try {
      await store.nodes.create({
        machineKey: PrivateKey.generate(MachinePublic).publicKey,
        nodeKey: PrivateKey.generate(NodePublic).publicKey,
        discoKey: 'discokey:0000000000000000000000000000000000000000000000000000000000000000' as never,
        ipv4: '100.64.0.1',
        ipv6: 'fd7a:115c:a1e0::1',
        hostname: 'laptop',
        givenName: 'laptop',
        userId: Number(dave.id),
        registerMethod: 'authkey',
      });
    } finally {
      await store.close();
    }
    refused(
      await weft.cli(['users', 'delete', 'dave']),
      1,
      /^error: user "dave" still owns 1 node; delete or reassign them first/,
    );
    assert.ok(
      JSON.parse(ok(await weft.cli(['users', 'list', '-o', 'json']))).some(
        (u: { name: string }) => u.name === 'dave',
      ),
    );
  });

  test('remote mode: --server with an API key; a bad or expired key is refused', async () => {
    const apiKey = ok(await weft.cli(['apikeys', 'create', '--expiration', '1d'])).trimEnd();
    assert.match(apiKey, /^weft-api-[0-9a-f]{12}-[0-9a-f]{64}$/);
    // A different working directory and no data dir: only --server can find the server.
    const remote = (args: string[], env: Record<string, string> = {}) =>
      runWeft(args, { WEFT_DATA_DIR: '/nonexistent', ...env });

    const users = JSON.parse(
      ok(await remote(['users', 'list', '-o', 'json', '--server', weft.url, '--api-key', apiKey])),
    );
    assert.ok(users.some((u: { name: string }) => u.name === 'alice'));
    ok(await remote(['users', 'create', 'erin'], { WEFT_SERVER: weft.url, WEFT_API_KEY: apiKey }));

    refused(
      await remote([
        'users',
        'list',
        '--server',
        weft.url,
        '--api-key',
        `weft-api-000000000000-${'0'.repeat(64)}`,
      ]),
      1,
      /^error: the API key is unknown, malformed or expired$/,
    );
    refused(await remote(['users', 'list', '--server', weft.url]), 2, /needs an API key/);
    refused(
      await remote(['users', 'list', '--server', 'ftp://x', '--api-key', apiKey]),
      2,
      /http:\/\/ or https:\/\//,
    );

    // A key for a user: listed with its user; an unknown user is refused and creates nothing.
    const owned = ok(
      await remote(['apikeys', 'create', '--user', 'erin', '--server', weft.url, '--api-key', apiKey]),
    );
    const keys = JSON.parse(ok(await weft.cli(['apikeys', 'list', '-o', 'json'])));
    const listedOwned = keys.find((k: { prefix: string }) => owned.startsWith(k.prefix));
    assert.equal(listedOwned?.user?.name, 'erin');
    refused(await weft.cli(['apikeys', 'create', '--user', 'nobody']), 1, /nobody/);
    assert.equal(JSON.parse(ok(await weft.cli(['apikeys', 'list', '-o', 'json']))).length, keys.length);

    ok(await weft.cli(['apikeys', 'expire', apiKey.slice(0, 'weft-api-'.length + 12)]));
    refused(
      await remote(['users', 'list', '--server', weft.url, '--api-key', apiKey]),
      1,
      /unknown, malformed or expired/,
    );
  });

  test('a second server on the same data directory refuses to start', async () => {
    const second = await runWeft(['serve'], { ...weft.env, WEFT_DATA_DIR: weft.dataDir } as Record<
      string,
      string
    >);
    assert.equal(second.code, 1);
    assert.match(second.stderr, /another weft server is already running with this data directory/);
    assert.equal((await fetch(`${weft.url}/health`)).status, 200, 'the first server is unharmed');
    ok(await weft.cli(['users', 'list']));
  });

  test('an oversize body is refused from its Content-Length before the body is sent', async () => {
    const { port } = new URL(weft.url);
    // With a valid key: without one, the request is refused (401) before the body matters at all.
    const apiKey = ok(await weft.cli(['apikeys', 'create', '--expiration', '1h'])).trim();
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/api/v1/user',
        headers: {
          authorization: `Bearer ${apiKey}`,
          'content-type': 'application/json',
          'content-length': String(64 * 1024 * 1024),
        },
      });
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      // Only the headers and a few bytes go out; the answer must not wait for the other 64 MiB.
      req.write('{"name":"');
      setTimeout(() => reject(new Error('no answer without the body')), 5_000).unref();
    });
    assert.equal(answer.status, 413);
    assert.equal(JSON.parse(answer.body).code, 'BODY_TOO_LARGE');
  });

  test('metrics are served on metrics_listen_addr', async () => {
    const res = await fetch(`http://${weft.metricsAddress}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /weft_http_requests_total\{method="GET",route="\/health",status="200"\}/);
    assert.match(text, /weft_nodejs_eventloop_lag_seconds/);
  });
});

describe('weft nodes against a running server', () => {
  let weft: WeftServer;
  let dataDir: string;
  const ids = { laptop: '', phone: '', server: '' };

  before(async () => {
    // The tailnet reads nodes once at start-up: create the users, stop, write nodes, start again.
    const first = await startWeft();
    dataDir = first.dataDir;
    ok(await first.cli(['users', 'create', 'alice']));
    ok(await first.cli(['users', 'create', 'bob']));
    assert.equal((await first.stop({ keepDataDir: true })).code, 0);
    const { store } = await openStore({ type: 'sqlite', path: join(dataDir, 'weft.db') });
    try {
      const alice = await store.users.getByName('alice');
      const bob = await store.users.getByName('bob');
      const seed = async (n: number, name: string, userId: number | null, extra: Partial<NewNode> = {}) =>
        String(await seedNode(store, n, name, userId, extra));
      ids.laptop = await seed(1, 'laptop', alice.id, {
        hostinfo: { Hostname: 'laptop', OS: 'linux', IPNVersion: '1.80.0', RoutableIPs: ['10.20.0.0/16'] },
        lastSeen: new Date('2025-01-02T03:04:05Z'),
      });
      ids.phone = await seed(2, 'phone', bob.id);
      ids.server = await seed(3, 'server', null, { tags: ['tag:server'] });
    } finally {
      await store.close();
    }
    weft = await startWeft({ dataDir });
  });
  after(async () => {
    await weft?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const nodesJson = async (args: string[] = []) =>
    JSON.parse(ok(await weft.cli(['nodes', 'list', ...args, '-o', 'json']))) as {
      id: string;
      name: string;
      fqdn: string;
      user: { name: string } | null;
      tags: string[];
      ipAddresses: string[];
      expired: boolean;
    }[];

  test('list: a table, JSON, and one user’s nodes', async () => {
    const table = ok(await weft.cli(['nodes', 'list']))
      .trimEnd()
      .split('\n');
    assert.match(table[0] ?? '', /^ID\s+NAME\s+HOSTNAME\s+USER\s+IPV4\s+IPV6\s+LAST SEEN\s+EXPIRY\s+TAGS$/);
    assert.equal(table.length, 4);
    assert.match(
      table[1] ?? '',
      new RegExp(
        `^${ids.laptop}\\s+laptop\\s+laptop\\s+alice\\s+100\\.64\\.0\\.1\\s+fd7a:115c:a1e0::1\\s+2025-01-02 03:04:05Z\\s+never$`,
      ),
    );
    assert.match(
      table[2] ?? '',
      /^\d+\s+phone\s+phone\s+bob\s+100\.64\.0\.2\s+fd7a:115c:a1e0::2\s+never\s+never$/,
    );
    assert.match(table[3] ?? '', /^\d+\s+server\s+server\s+-\s+.*\s+tag:server$/);

    const all = await nodesJson();
    assert.deepEqual(
      all.map((n) => [n.id, n.name, n.user?.name ?? null]),
      [
        [ids.laptop, 'laptop', 'alice'],
        [ids.phone, 'phone', 'bob'],
        [ids.server, 'server', null],
      ],
    );
    assert.deepEqual(all[0]?.ipAddresses, ['100.64.0.1', 'fd7a:115c:a1e0::1']);
    assert.match(all[0]?.fqdn ?? '', /^laptop\.[a-z0-9.-]+$/);
    assert.deepEqual(all[2]?.tags, ['tag:server']);

    assert.deepEqual(
      (await nodesJson(['--user', 'bob'])).map((n) => n.name),
      ['phone'],
    );
    refused(
      await weft.cli(['nodes', 'list', '--user', 'nobody']),
      1,
      /^error: there is no user named "nobody"$/,
    );
  });

  test('show: key/value lines or JSON', async () => {
    const text = ok(await weft.cli(['nodes', 'show', ids.laptop]));
    assert.match(text, new RegExp(`^ID:\\s+${ids.laptop}$`, 'm'));
    assert.match(text, /^Name:\s+laptop$/m);
    assert.match(text, /^User:\s+alice$/m);
    assert.match(text, /^IPv4:\s+100\.64\.0\.1$/m);
    assert.match(text, /^OS:\s+linux$/m);
    assert.match(text, /^Client version:\s+1\.80\.0$/m);
    assert.match(text, /^Expiry:\s+never$/m);
    assert.match(text, /^Node key:\s+nodekey:[0-9a-f]{64}$/m);
    const json = JSON.parse(ok(await weft.cli(['nodes', 'show', ids.server, '-o', 'json'])));
    assert.equal(json.name, 'server');
    assert.equal(json.user, null);
  });

  test('rename, expire, delete', async () => {
    assert.equal(
      ok(await weft.cli(['nodes', 'rename', ids.laptop, 'desk'])),
      `Node ${ids.laptop} renamed from "laptop" to "desk"\n`,
    );
    assert.equal((await nodesJson())[0]?.name, 'desk');

    assert.equal(ok(await weft.cli(['nodes', 'expire', ids.laptop])), `Node ${ids.laptop} (desk) expired\n`);
    const shown = JSON.parse(ok(await weft.cli(['nodes', 'show', ids.laptop, '-o', 'json'])));
    assert.equal(shown.expired, true);
    assert.match(ok(await weft.cli(['nodes', 'list', '--user', 'alice'])), /desk.*\(expired\)/);

    assert.equal(ok(await weft.cli(['nodes', 'delete', ids.phone])), `Node ${ids.phone} (phone) deleted\n`);
    assert.deepEqual(
      (await nodesJson()).map((n) => n.name),
      ['desk', 'server'],
    );
    refused(
      await weft.cli(['nodes', 'show', ids.phone]),
      1,
      new RegExp(`^error: there is no node with id ${ids.phone}$`),
    );
  });

  test('bad input: one sentence on stderr, non-zero exit, nothing changed', async () => {
    const before = ok(await weft.cli(['nodes', 'list', '-o', 'json']));
    refused(await weft.cli(['nodes', 'show', '999999']), 1, /^error: there is no node with id 999999$/);
    refused(await weft.cli(['nodes', 'delete', '999999']), 1, /^error: there is no node with id 999999$/);
    refused(await weft.cli(['nodes', 'expire', '999999']), 1, /^error: there is no node with id 999999$/);
    refused(
      await weft.cli(['nodes', 'rename', '999999', 'x']),
      1,
      /^error: there is no node with id 999999$/,
    );
    refused(
      await weft.cli(['nodes', 'rename', ids.laptop, 'Bad_Name']),
      1,
      /^error: invalid node name "Bad_Name": a name contains only lowercase letters, digits and "-"$/,
    );
    refused(
      await weft.cli(['nodes', 'rename', ids.laptop, 'server']),
      1,
      /^error: another node is already called "server"$/,
    );
    refused(await weft.cli(['nodes', 'show', 'abc']), 2, /'abc' is invalid.*positive integer id/);
    refused(await weft.cli(['nodes', 'delete', '0']), 2, /positive integer id/);
    refused(await weft.cli(['nodes', 'expire', '-5']), 2, /^error: /);
    refused(await weft.cli(['nodes', 'rename', ids.laptop]), 2, /missing required argument 'new-name'/);
    refused(await weft.cli(['nodes', 'show']), 2, /missing required argument 'id'/);
    refused(await weft.cli(['nodes', 'list', '-o', 'yaml']), 2, /argument 'yaml' is invalid/);
    assert.equal(ok(await weft.cli(['nodes', 'list', '-o', 'json'])), before);
  });

  test('routes list / approve / unapprove; refusals say why and change nothing', async () => {
    const table = ok(await weft.cli(['routes', 'list']))
      .trimEnd()
      .split('\n');
    assert.match(table[0] ?? '', /^ID\s+NAME\s+ADVERTISED\s+APPROVED\s+SERVING$/);
    assert.match(table[1] ?? '', new RegExp(`^${ids.laptop}\\s+desk\\s+10\\.20\\.0\\.0/16\\s+-\\s+-$`));
    assert.equal(table.length, 2, 'only nodes with routes');

    refused(
      await weft.cli(['routes', 'approve', ids.laptop, '10.30.0.0/16']),
      1,
      /^error: node \d+ does not advertise 10\.30\.0\.0\/16; it advertises 10\.20\.0\.0\/16$/,
    );
    refused(await weft.cli(['routes', 'approve', ids.laptop, 'ten']), 1, /^error: "ten" is not a route/);
    refused(await weft.cli(['routes', 'approve', '999999', '10.20.0.0/16']), 1, /no node with id 999999/);
    refused(
      await weft.cli(['routes', 'unapprove', ids.laptop, '10.20.0.0/16']),
      1,
      /has no approved route 10\.20\.0\.0\/16/,
    );
    assert.equal(
      ok(await weft.cli(['routes', 'approve', ids.laptop, '10.20.0.0/16'])),
      `Node ${ids.laptop} (desk): approved 10.20.0.0/16; serving -\n`,
    );
    const listed = JSON.parse(ok(await weft.cli(['routes', 'list', '-o', 'json'])));
    assert.deepEqual(listed, [
      {
        id: ids.laptop,
        name: 'desk',
        availableRoutes: ['10.20.0.0/16'],
        approvedRoutes: ['10.20.0.0/16'],
        subnetRoutes: [],
      },
    ]);
    assert.equal(
      ok(await weft.cli(['routes', 'unapprove', ids.laptop, '10.20.0.0/16'])),
      `Node ${ids.laptop} (desk): approved -; serving -\n`,
    );
  });

  test('nodes tag follows the policy; nodes expire --in / --never', async () => {
    refused(
      await weft.cli(['nodes', 'tag', ids.laptop, '--tags', 'tag:web']),
      1,
      /^error: requested tags \[tag:web\] are invalid or not permitted$/,
    );
    refused(await weft.cli(['nodes', 'tag', ids.laptop, '--tags', 'web']), 2, /tags start with "tag:"/);
    const dir = await mkdtemp(join(tmpdir(), 'weft-cli-policy-'));
    try {
      await writeFile(join(dir, 'policy.hujson'), '{"tagOwners": {"tag:web": []}}');
      ok(await weft.cli(['policy', 'set', join(dir, 'policy.hujson')]));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    assert.equal(
      ok(await weft.cli(['nodes', 'tag', ids.laptop, '--tags', 'tag:web'])),
      `Node ${ids.laptop} (desk) tagged tag:web\n`,
    );
    const tagged = (await nodesJson()).find((n) => n.id === ids.laptop);
    assert.equal(tagged?.user, null);
    assert.deepEqual(tagged?.tags, ['tag:web']);

    assert.equal(
      ok(await weft.cli(['nodes', 'expire', ids.server, '--never'])),
      `Node ${ids.server} (server) now expires: never\n`,
    );
    assert.match(
      ok(await weft.cli(['nodes', 'expire', ids.server, '--in', '1d'])),
      /now expires: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\n$/,
    );
    refused(
      await weft.cli(['nodes', 'expire', ids.server, '--in', '1d', '--never']),
      2,
      /exclude each other/,
    );
  });
});

describe('weft serve lifecycle', () => {
  test('SIGTERM stops cleanly and removes the socket; data survives a restart', async () => {
    const first = await startWeft();
    ok(await first.cli(['users', 'create', 'zoe']));
    const stopped = await first.stop({ keepDataDir: true });
    assert.equal(stopped.code, 0);
    assert.ok(first.logEntries().some((e) => e.msg === 'stopped'));
    await assert.rejects(stat(first.socketPath), { code: 'ENOENT' });

    const second = await startWeft({ dataDir: first.dataDir });
    try {
      assert.match(ok(await second.cli(['users', 'list'])), /zoe/);
      assert.ok(!second.logEntries().some((e) => e.msg === 'database migrated'), 'nothing left to migrate');
    } finally {
      await second.stop();
    }
  });

  test('a crashed server leaves a stale lock and socket that the next start takes over', async () => {
    const crashed = await startWeft();
    ok(await crashed.cli(['users', 'create', 'yan']));
    assert.equal((await crashed.stop({ signal: 'SIGKILL', keepDataDir: true })).signal, 'SIGKILL');
    await stat(join(crashed.dataDir, 'weft.lock'));
    await stat(crashed.socketPath);

    const restarted = await startWeft({ dataDir: crashed.dataDir });
    try {
      assert.match(ok(await restarted.cli(['users', 'list'])), /yan/);
    } finally {
      await restarted.stop();
      await rm(crashed.dataDir, { recursive: true, force: true });
    }
  });

  test('SIGINT stops cleanly too', async () => {
    const weft = await startWeft();
    assert.equal((await weft.stop({ signal: 'SIGINT' })).code, 0);
  });

  test('a busy listen_addr stops start-up with one sentence', async () => {
    const holder = await startWeft();
    try {
      const port = new URL(holder.url).port;
      const result = await runWeft(['serve'], {
        WEFT_LISTEN_ADDR: `127.0.0.1:${port}`,
        WEFT_METRICS_LISTEN_ADDR: '',
        WEFT_DATA_DIR: join(holder.dataDir, 'other'),
      });
      refused(
        result,
        1,
        new RegExp(
          `^error: cannot listen on 127\\.0\\.0\\.1:${port} \\(listen_addr\\): the address is already in use$`,
        ),
        { logsOnStdout: true },
      );
    } finally {
      await holder.stop();
    }
  });
});

describe('weft serve configuration errors', () => {
  test('unknown keys and bad values stop start-up with the key path; nothing is created', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'bad.yaml');
    await writeFile(
      file,
      [
        'listen_addr: 127.0.0.1:0',
        'prefixes:',
        '  v4: 100.64.0.0/33',
        'derp:',
        '  server:',
        '    regoin_id: 5',
        '',
      ].join('\n'),
    );
    const dataDir = join(dir, 'never-created');
    const result = await runWeft(['serve', '--config', file], { WEFT_DATA_DIR: dataDir });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /prefixes\.v4/);
    assert.match(result.stderr, /derp\.server.*regoin_id/);
    await assert.rejects(stat(dataDir), { code: 'ENOENT' });
  });

  test('a bad environment value names the variable', async () => {
    const result = await runWeft(['serve'], { WEFT_LISTEN_ADDR: 'localhost' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /WEFT_LISTEN_ADDR/);
  });

  test('--print-config prints the effective config with secrets redacted', async () => {
    const result = await runWeft(['serve', '--print-config'], {
      WEFT_DATABASE_TYPE: 'postgres',
      WEFT_DATABASE_URL: 'postgres://weft:hunter2@db.internal:5432/weft',
      WEFT_LISTEN_ADDR: '127.0.0.1:9999',
    });
    const text = ok(result);
    assert.match(text, /listen_addr: 127\.0\.0\.1:9999/);
    assert.match(text, /postgres:\/\/weft:\*\*\*@db\.internal:5432\/weft/);
    assert.ok(!text.includes('hunter2'));
  });
});

describe('weft serve on PostgreSQL', () => {
  test('serves, and /health fails naming the database once PostgreSQL goes away', async () => {
    const postgres = await startPostgres();
    let weft: WeftServer | undefined;
    try {
      const url = await postgres.createDatabase('weft_cli');
      weft = await startWeft({ env: { WEFT_DATABASE_TYPE: 'postgres', WEFT_DATABASE_URL: url } });
      ok(await weft.cli(['users', 'create', 'pat']));
      assert.match(ok(await weft.cli(['users', 'list'])), /pat/);
      assert.equal((await fetch(`${weft.url}/health`)).status, 200);

      await postgres.stop();
      const res = await fetch(`${weft.url}/health`);
      assert.equal(res.status, 500);
      const body = (await res.json()) as {
        status: string;
        checks: { database: { status: string; output: string } };
      };
      assert.equal(body.status, 'fail');
      assert.equal(body.checks.database.status, 'fail');
      assert.ok(body.checks.database.output.length > 0);
      assert.match(body.checks.database.output, /^the database (query failed|did not answer)/);
      assert.ok(
        !body.checks.database.output.includes('127.0.0.1'),
        'no connection details to anonymous callers',
      );
      refused(
        await weft.cli(['users', 'list']),
        1,
        /^error: the database is unavailable; the server log has the details$/,
      );
      await weft.waitForLog(
        (e) =>
          e.msg === 'database health check: query failed' || e.msg === 'database health check: no answer',
        5_000,
      );
    } finally {
      await weft?.stop();
      await postgres.stop();
    }
  });
});
