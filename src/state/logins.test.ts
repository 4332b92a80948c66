import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { WeftError } from '../types/errors.ts';
import { MachinePublic, NodePublic, PrivateKey } from '../types/keys.ts';
import { type LoginCompletion, type LoginRegistrar, type LoginRequest, PendingLogins } from './logins.ts';
import type { TailnetNode } from './model.ts';

const TTL = 60_000;

function device(hostname = 'laptop'): LoginRequest {
  return {
    machineKey: PrivateKey.generate(MachinePublic).publicKey,
    nodeKey: PrivateKey.generate(NodePublic).publicKey,
    hostinfo: { Hostname: hostname },
    ephemeral: false,
  };
}

/** Records registrations and answers with a stand-in node; `refuse` makes the next one throw. */
class FakeRegistrar implements LoginRegistrar {
  calls: Array<LoginRequest & LoginCompletion> = [];
  refuse: Error | undefined;

  async registerForUser(request: LoginRequest & LoginCompletion) {
    this.calls.push(request);
    if (this.refuse !== undefined) throw this.refuse;
    const node = { id: this.calls.length, nodeKey: request.nodeKey, userId: request.userId } as TailnetNode;
    return { node, created: true };
  }
}

describe('PendingLogins', () => {
  let registrar: FakeRegistrar;
  let logins: PendingLogins;

  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.parse('2026-01-01T00:00:00Z') });
    registrar = new FakeRegistrar();
    logins = new PendingLogins({ registrar, ttlMs: TTL, maxEntries: 3 });
  });
  afterEach(() => {
    logins.close();
    mock.timers.reset();
  });

  test('a login has a random weft-login id, the device, and an expiry ttl from now', () => {
    const request = device();
    const login = logins.create(request);
    assert.match(login.id, /^weft-login-[0-9a-f]{24}$/);
    assert.notEqual(logins.create(device()).id, login.id);
    assert.equal(login.machineKey, request.machineKey);
    assert.equal(login.nodeKey, request.nodeKey);
    assert.equal(login.expiresAt.getTime() - login.createdAt.getTime(), TTL);
    assert.equal(logins.get(login.id), login);
    assert.deepEqual(
      logins.list().map((l) => l.id),
      [login.id, logins.list()[1]?.id],
    );
  });

  test('a login expires after the ttl: get/list forget it and a waiter wakes with "expired"', async () => {
    const request = device();
    const login = logins.create(request);
    const waiting = logins.wait(login.id, request, new AbortController().signal);
    assert.ok(waiting);
    mock.timers.tick(TTL - 1);
    assert.ok(logins.get(login.id), 'still pending just before the expiry');
    mock.timers.tick(1);
    assert.deepEqual(await waiting, { kind: 'expired' });
    assert.equal(logins.get(login.id), undefined);
    assert.deepEqual(logins.list(), []);
    assert.equal(logins.waiterCount, 0);
    assert.equal(logins.wait(login.id, request, new AbortController().signal), undefined);
  });

  test('a login the device starts while its first is being completed ends with it', async () => {
    const request = device();
    const first = logins.create(request);
    let release: () => void = () => undefined;
    const slow = new Promise<void>((resolve) => {
      release = resolve;
    });
    const registerForUser = registrar.registerForUser.bind(registrar);
    registrar.registerForUser = async (r) => {
      await slow;
      return registerForUser(r);
    };
    const completing = logins.complete(first.id, { userId: 7, method: 'cli' });
    const second = logins.create(request);
    assert.notEqual(second.id, first.id);
    const waiting = logins.wait(second.id, request, new AbortController().signal);
    assert.ok(waiting, 'the second login is pending while the first is being completed');
    release();
    const node = await completing;
    assert.deepEqual(await waiting, { kind: 'completed', node });
    assert.equal(logins.get(second.id), undefined);
  });

  test('completing wakes every waiter with the node and registers the device for the user', async () => {
    const request = { ...device(), ephemeral: true };
    const login = logins.create(request);
    const first = logins.wait(login.id, request, new AbortController().signal);
    const second = logins.wait(login.id, request, new AbortController().signal);
    assert.equal(logins.waiterCount, 2);
    const node = await logins.complete(login.id, { userId: 7, method: 'cli' });
    assert.deepEqual(await first, { kind: 'completed', node });
    assert.deepEqual(await second, { kind: 'completed', node });
    assert.deepEqual(registrar.calls, [{ ...request, userId: 7, method: 'cli' }]);
    assert.equal(logins.get(login.id), undefined);
    assert.equal(logins.waiterCount, 0);
  });

  test('complete of an unknown, finished or expired id is LOGIN_NOT_FOUND', async () => {
    const notFound = (err: unknown) => err instanceof WeftError && err.code === 'LOGIN_NOT_FOUND';
    await assert.rejects(
      logins.complete('weft-login-000000000000000000000000', { userId: 1, method: 'cli' }),
      notFound,
    );
    const done = logins.create(device());
    await logins.complete(done.id, { userId: 1, method: 'cli' });
    await assert.rejects(logins.complete(done.id, { userId: 1, method: 'cli' }), notFound);
    const expired = logins.create(device());
    mock.timers.tick(TTL);
    await assert.rejects(logins.complete(expired.id, { userId: 1, method: 'cli' }), notFound);
    assert.equal(registrar.calls.length, 1);
  });

  test('a registration the policy refuses ends the login with that reason; other failures keep it', async () => {
    const request = device();
    const kept = logins.create(request);
    registrar.refuse = new WeftError('USER_NOT_FOUND', 'there is no user with id 9');
    await assert.rejects(logins.complete(kept.id, { userId: 9, method: 'cli' }), /no user with id 9/);
    assert.ok(logins.get(kept.id), 'an unknown user leaves the login pending');

    const waiting = logins.wait(kept.id, request, new AbortController().signal);
    registrar.refuse = new WeftError('BAD_REQUEST', 'requested tags [tag:x] are invalid or not permitted');
    await assert.rejects(logins.complete(kept.id, { userId: 1, method: 'cli' }), /requested tags/);
    assert.deepEqual(await waiting, {
      kind: 'rejected',
      reason: 'requested tags [tag:x] are invalid or not permitted',
    });
    assert.equal(logins.get(kept.id), undefined);
  });

  test('reject wakes the waiters with the reason; false for an unknown id', async () => {
    const request = device();
    const login = logins.create(request);
    const waiting = logins.wait(login.id, request, new AbortController().signal);
    assert.equal(logins.reject(login.id, 'no thanks'), true);
    assert.deepEqual(await waiting, { kind: 'rejected', reason: 'no thanks' });
    assert.equal(logins.reject(login.id, 'again'), false);
    assert.equal(logins.get(login.id), undefined);
  });

  test('aborting a wait removes the waiter and leaves the login pending', async () => {
    const request = device();
    const login = logins.create(request);
    const controller = new AbortController();
    const waiting = logins.wait(login.id, request, controller.signal);
    assert.equal(logins.waiterCount, 1);
    controller.abort();
    assert.deepEqual(await waiting, { kind: 'aborted' });
    assert.equal(logins.waiterCount, 0);
    assert.ok(logins.get(login.id));
    const aborted = new AbortController();
    aborted.abort();
    assert.deepEqual(await logins.wait(login.id, request, aborted.signal), { kind: 'aborted' });
    assert.equal(logins.waiterCount, 0);
  });

  test('only the device that asked may wait on its login', () => {
    const request = device();
    const login = logins.create(request);
    const signal = new AbortController().signal;
    assert.equal(logins.wait(login.id, { ...request, machineKey: device().machineKey }, signal), undefined);
    assert.equal(logins.wait(login.id, { ...request, nodeKey: device().nodeKey }, signal), undefined);
    assert.equal(logins.waiterCount, 0);
  });

  test('bounded: a full table refuses new logins (LOGINS_FULL) and evicts nothing', () => {
    const ids = [logins.create(device()), logins.create(device()), logins.create(device())].map((l) => l.id);
    assert.throws(
      () => logins.create(device()),
      (err: unknown) => err instanceof WeftError && err.code === 'LOGINS_FULL',
    );
    for (const id of ids) assert.ok(logins.get(id));
    mock.timers.tick(TTL);
    assert.ok(logins.create(device()), 'expired entries make room again');
  });

  test("a machine's newer login replaces its older one; the old waiter is told", async () => {
    const request = device();
    const old = logins.create(request);
    const waiting = logins.wait(old.id, request, new AbortController().signal);
    const newer = logins.create({ ...request, nodeKey: device().nodeKey });
    assert.deepEqual(await waiting, { kind: 'superseded' });
    assert.equal(logins.get(old.id), undefined);
    assert.ok(logins.get(newer.id));
    assert.equal(logins.size, 1);
  });
});
