/**
 * Terraform itself with the official Tailscale provider (tailscale/terraform-provider-tailscale, built
 * by scripts/terraform-bin.sh and installed through `dev_overrides`) manages a fresh weft through its
 * Tailscale API v2: the first apply creates the policy file (the provider sends `If-Match:
 * "ts-default"`, which must succeed on a tailnet whose policy nobody has changed) and a reusable,
 * preauthorized, tagged auth key; a plan right after finds no drift; a changed ACL is applied; destroy
 * deletes the key and (reset_acl_on_destroy) puts the default policy back. Every effect is checked
 * through weft's own REST API, and the key Terraform minted registers a node that gets its tag.
 *
 * Terraform never touches the network: with dev_overrides `terraform init` is not needed, the CLI
 * config and HOME are temp files, and HTTP(S)_PROXY point at a closed loopback port so any request to
 * a registry fails the test (loopback requests to weft are never proxied).
 *
 * Skipped only when the binaries are absent and scripts/terraform-bin.sh says they cannot be built
 * here (exit 3: the Go module proxy refuses the provider's module); any other build failure fails.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MachinePublic, NodePublic, PrivateKey } from '../../src/types/keys.ts';
import { type CommandResult, runCommand } from '../harness/child.ts';
import { connectControl } from '../harness/control-client.ts';
import { listNodes, startWeft, type WeftServer } from '../harness/weft.ts';

const BUILD_SCRIPT = fileURLToPath(new URL('../../scripts/terraform-bin.sh', import.meta.url));
/** The script's "cannot be built on this machine" exit code (anything else non-zero is a failure). */
const CANNOT_BUILD = 3;
const BUILD_TIMEOUT_MS = 20 * 60_000; // a cold build of terraform and the provider takes minutes
const TERRAFORM_TIMEOUT_MS = 120_000;
/** A port nothing listens on: the proxy for anything Terraform might try to fetch from outside. */
const DEAD_PROXY = 'http://127.0.0.1:9';
const TAG = 'tag:terraform-ci';
/** The user the API key belongs to, and with it every untagged key Terraform mints. */
const OWNER = 'terraform-owner';

type Tools = { dir: string } | { cannotBuild: string };

async function terraformTools(): Promise<Tools> {
  const result = await runCommand(BUILD_SCRIPT, [], { timeoutMs: BUILD_TIMEOUT_MS, killProcessGroup: true });
  if (result.code === CANNOT_BUILD) {
    // The script's reason starts at "cannot build"; its progress lines before that say nothing more.
    const reason = result.stderr.slice(Math.max(0, result.stderr.indexOf('cannot build')));
    return { cannotBuild: reason.trim() };
  }
  const dir = result.stdout.trim().split('\n').at(-1) ?? '';
  if (result.code !== 0 || dir === '') {
    const outcome = result.code === null ? `timed out after ${BUILD_TIMEOUT_MS} ms` : `exit ${result.code}`;
    throw new Error(`scripts/terraform-bin.sh failed (${outcome}):\n${result.stderr.slice(-4000)}`);
  }
  return { dir };
}

/** The policy Terraform manages; `marker` makes each version distinguishable (and keeps a comment). */
function aclHujson(marker: string, extraHost = ''): string {
  return `{
  // managed by terraform: ${marker}
  "tagOwners": { "${TAG}": ["autogroup:admin"] },
  "hosts": { "db": "100.64.0.9"${extraHost} },
  "acls": [
    { "action": "accept", "src": ["*"], "dst": ["*:*"] },
  ],
}
`;
}

function mainTf(weftUrl: string, acl: string): string {
  return `terraform {
  required_providers {
    tailscale = { source = "tailscale/tailscale" }
  }
}

variable "api_key" {
  type      = string
  sensitive = true
}

provider "tailscale" {
  api_key  = var.api_key
  base_url = "${weftUrl}"
  tailnet  = "-"
}

resource "tailscale_acl" "policy" {
  reset_acl_on_destroy = true
  acl                  = <<-HUJSON
${acl}
  HUJSON
}

resource "tailscale_tailnet_key" "ci" {
  reusable      = true
  preauthorized = true
  tags          = ["${TAG}"]
  expiry        = 3600
  description   = "terraform interop"
  # The tag must be owned in the policy before a key may carry it.
  depends_on = [tailscale_acl.policy]
}

# No tags: the key belongs to the API key's user (weft apikeys create --user), as in Tailscale.
resource "tailscale_tailnet_key" "personal" {
  expiry      = 3600
  description = "terraform personal"
}

output "personal_key_id" {
  value = tailscale_tailnet_key.personal.id
}

output "key_id" {
  value = tailscale_tailnet_key.ci.id
}

output "auth_key" {
  value     = tailscale_tailnet_key.ci.key
  sensitive = true
}
`;
}

interface Workspace {
  /** Writes main.tf. */
  writeConfig(text: string): Promise<void>;
  run(args: string[]): Promise<CommandResult>;
  /** Runs terraform and fails with its output (which never holds the API key: it is a sensitive var). */
  ok(args: string[]): Promise<string>;
  remove(): Promise<void>;
}

/** A temp HOME, CLI config (dev_overrides to `toolsDir`) and working directory for one configuration. */
async function createWorkspace(toolsDir: string, apiKey: string): Promise<Workspace> {
  const root = await mkdtemp(join(tmpdir(), 'weft-terraform-'));
  const home = join(root, 'home');
  const work = join(root, 'work');
  await mkdir(home);
  await mkdir(work);
  const cliConfig = join(root, 'cli.tfrc');
  await writeFile(
    cliConfig,
    `provider_installation {
  dev_overrides {
    "tailscale/tailscale" = ${JSON.stringify(toolsDir)}
  }
  direct {}
}
`,
  );
  // A clean environment: nothing from the developer's shell (TAILSCALE_*, TF_PLUGIN_CACHE_DIR, a
  // TF_CLI_CONFIG_FILE of their own) reaches Terraform or the provider.
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    TF_CLI_CONFIG_FILE: cliConfig,
    TF_IN_AUTOMATION: '1',
    TF_INPUT: '0',
    CHECKPOINT_DISABLE: '1',
    TF_VAR_api_key: apiKey,
    HTTP_PROXY: DEAD_PROXY,
    HTTPS_PROXY: DEAD_PROXY,
    http_proxy: DEAD_PROXY,
    https_proxy: DEAD_PROXY,
  };
  const terraform = join(toolsDir, 'terraform');
  const run = (args: string[]) =>
    runCommand(terraform, args, { cwd: work, env, timeoutMs: TERRAFORM_TIMEOUT_MS, killProcessGroup: true });
  return {
    writeConfig: (text) => writeFile(join(work, 'main.tf'), text),
    run,
    ok: async (args) => {
      const result = await run(args);
      assert.equal(result.code, 0, `terraform ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
      return result.stdout;
    },
    remove: () => rm(root, { recursive: true, force: true }),
  };
}

type V1PreAuthKey = {
  id: string;
  reusable: boolean;
  ephemeral: boolean;
  aclTags: string[];
  expiration: string;
  user: { name: string } | null;
};

async function v1Get<T>(weft: WeftServer, apiKey: string, path: string): Promise<T> {
  const response = await fetch(new URL(`/api/v1${path}`, weft.url), {
    headers: { authorization: `Bearer ${apiKey}` },
  });
  assert.equal(
    response.status,
    200,
    `GET /api/v1${path}: ${response.status} ${await response.clone().text()}`,
  );
  return (await response.json()) as T;
}

const policyText = async (weft: WeftServer, apiKey: string) =>
  (await v1Get<{ policy: string; version: number }>(weft, apiKey, '/policy')).policy;
const preAuthKeys = async (weft: WeftServer, apiKey: string) =>
  (await v1Get<{ preAuthKeys: V1PreAuthKey[] }>(weft, apiKey, '/preauthkey')).preAuthKeys;

/** Registers a fresh node with `authKey` through the control protocol, as tailscaled would. */
async function registerWith(weft: WeftServer, authKey: string, hostname: string): Promise<void> {
  const connection = await connectControl(weft.url, { machineKey: PrivateKey.generate(MachinePublic) });
  try {
    const response = await connection.request('POST', '/machine/register', {
      Version: 142,
      NodeKey: PrivateKey.generate(NodePublic).publicKey,
      OldNodeKey: NodePublic.zero,
      Auth: { AuthKey: authKey },
      Expiry: '0001-01-01T00:00:00Z',
      Followup: '',
      Hostinfo: { Hostname: hostname, OS: 'linux', BackendLogID: 'terraform-test' },
    });
    assert.equal(response.status, 200);
    const body = response.json();
    assert.equal(body.Error ?? '', '', 'the Terraform-minted key registers a node');
    assert.equal(body.MachineAuthorized, true, 'a preauthorized key needs no approval');
  } finally {
    connection.close();
  }
}

async function createApiKey(weft: WeftServer): Promise<string> {
  assert.equal((await weft.cli(['users', 'create', OWNER])).code, 0);
  const created = await weft.cli(['apikeys', 'create', '--user', OWNER, '-o', 'json']);
  assert.equal(created.code, 0, `weft apikeys create failed: ${created.stderr}`);
  return (JSON.parse(created.stdout) as { apiKey: string }).apiKey;
}

async function toolsOrSkip(t: TestContext): Promise<string | undefined> {
  const tools = await terraformTools();
  if ('dir' in tools) return tools.dir;
  t.skip(`scripts/terraform-bin.sh: ${tools.cannotBuild}`);
  return undefined;
}

test('Terraform with the official Tailscale provider manages weft', async (t) => {
  const toolsDir = await toolsOrSkip(t);
  if (toolsDir === undefined) return;

  const weft = await startWeft();
  t.after(() => weft.stop());
  const apiKey = await createApiKey(weft);
  const workspace = await createWorkspace(toolsDir, apiKey);
  t.after(() => workspace.remove());
  const defaultPolicy = await policyText(weft, apiKey);
  let keyId = '';
  let authKey = '';

  await t.test('the first apply on a fresh weft creates the policy and the auth key', async () => {
    await workspace.writeConfig(mainTf(weft.url, aclHujson('first')));
    const out = await workspace.ok(['apply', '-auto-approve', '-no-color']);
    assert.match(out, /Apply complete! Resources: 3 added, 0 changed, 0 destroyed\./);

    const policy = await policyText(weft, apiKey);
    assert.match(policy, /\/\/ managed by terraform: first/, 'stored as sent, comment and all');
    assert.match(policy, new RegExp(`"${TAG}"`));

    keyId = (await workspace.ok(['output', '-raw', 'key_id'])).trim();
    const key = (await preAuthKeys(weft, apiKey)).find((k) => k.id === keyId);
    assert.ok(key, `pre-auth key ${keyId} exists in weft`);
    assert.equal(key.reusable, true);
    assert.equal(key.ephemeral, false);
    assert.deepEqual(key.aclTags, [TAG]);
    const lifetimeS = (Date.parse(key.expiration) - Date.now()) / 1000;
    assert.ok(lifetimeS > 3_500 && lifetimeS <= 3_600, `expiry 3600 s, got ${lifetimeS} s left`);

    const personalId = (await workspace.ok(['output', '-raw', 'personal_key_id'])).trim();
    const personal = (await preAuthKeys(weft, apiKey)).find((k) => k.id === personalId);
    assert.ok(personal, `pre-auth key ${personalId} exists in weft`);
    assert.deepEqual(personal.aclTags, []);
    assert.equal(personal.user?.name, OWNER, "an untagged key is the API key's user's");
  });

  await t.test('the key Terraform minted registers a tagged, authorized node', async () => {
    authKey = (await workspace.ok(['output', '-raw', 'auth_key'])).trim();
    await registerWith(weft, authKey, 'tf-node');
    const node = (await listNodes(weft)).find((n) => n.givenName === 'tf-node');
    assert.ok(node, 'the node is listed');
    assert.deepEqual(node.tags, [TAG]);
  });

  await t.test('a plan right after the apply finds no drift', async () => {
    const plan = await workspace.run(['plan', '-detailed-exitcode', '-no-color']);
    assert.equal(plan.code, 0, `exit 0 means no changes; 2 means drift:\n${plan.stdout}\n${plan.stderr}`);
  });

  await t.test('a changed ACL is applied in place', async () => {
    await workspace.writeConfig(mainTf(weft.url, aclHujson('second', ', "web": "100.64.0.10"')));
    const out = await workspace.ok(['apply', '-auto-approve', '-no-color']);
    assert.match(out, /Resources: 0 added, 1 changed, 0 destroyed\./);
    const policy = await policyText(weft, apiKey);
    assert.match(policy, /\/\/ managed by terraform: second/);
    assert.match(policy, /"web": "100\.64\.0\.10"/);
    const plan = await workspace.run(['plan', '-detailed-exitcode', '-no-color']);
    assert.equal(plan.code, 0, `no drift after the update:\n${plan.stdout}\n${plan.stderr}`);
  });

  await t.test('destroy deletes the key and puts the default policy back', async () => {
    const out = await workspace.ok(['destroy', '-auto-approve', '-no-color']);
    assert.match(out, /Destroy complete! Resources: 3 destroyed\./);
    assert.equal(
      (await preAuthKeys(weft, apiKey)).find((k) => k.id === keyId),
      undefined,
      'the key is gone from weft',
    );
    assert.equal(await policyText(weft, apiKey), defaultPolicy);
  });

  await t.test(
    'after a destroy, apply creates everything again (a reset policy counts as the default)',
    async () => {
      await workspace.writeConfig(mainTf(weft.url, aclHujson('again')));
      const out = await workspace.ok(['apply', '-auto-approve', '-no-color']);
      assert.match(out, /Apply complete! Resources: 3 added, 0 changed, 0 destroyed\./);
      assert.match(await policyText(weft, apiKey), /\/\/ managed by terraform: again/);
      await workspace.ok(['destroy', '-auto-approve', '-no-color']);
      assert.equal(await policyText(weft, apiKey), defaultPolicy);
    },
  );

  await t.test('a create never overwrites a policy someone else set (If-Match "ts-default")', async () => {
    const custom = `{\n  // set by an admin, not by terraform\n  "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:22"] }],\n}\n`;
    const policyFile = join(tmpdir(), `weft-terraform-policy-${process.pid}.hujson`);
    await writeFile(policyFile, custom);
    t.after(() => rm(policyFile, { force: true }));
    const set = await weft.cli(['policy', 'set', policyFile]);
    assert.equal(set.code, 0, `weft policy set failed: ${set.stderr}`);

    await workspace.writeConfig(mainTf(weft.url, aclHujson('third')));
    const apply = await workspace.run(['apply', '-auto-approve', '-no-color']);
    assert.notEqual(apply.code, 0, 'the apply must fail');
    assert.match(apply.stderr, /Overwrite Protected/);
    assert.equal(await policyText(weft, apiKey), custom, "the admin's policy is untouched");
  });

  await t.test("weft's log holds neither the API key nor the auth key", () => {
    const log = weft.output();
    assert.ok(apiKey.length > 20 && authKey.length > 20);
    assert.equal(log.includes(apiKey), false, 'API key in the log');
    assert.equal(log.includes(authKey), false, 'auth key in the log');
  });
});
