/**
 * Loader for policy captures in the format of shared/conformance (Headscale's testcapture files,
 * recorded against Tailscale's own control plane): each file becomes the policy text, the tailnet it
 * was applied to, and what every node received. Shared by the conformance test and any other test that
 * wants real policies on a real topology (fuzzing, benchmarks).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import jsonc from 'jsonc-parser';
import type { PolicyNode, PolicyTailnet, PolicyUser } from '../../src/policy/index.ts';
import type { FilterRule, SSHRule } from '../../src/tailcfg/index.ts';

/** What one node received from Tailscale after the push (only the parts the tests read are typed). */
export interface CapturedNode {
  /** JSON null = no rules. */
  packet_filter_rules?: FilterRule[] | null;
  /** ssh/sshtest captures only; equals netmap.SSHPolicy.rules. */
  ssh_rules?: SSHRule[] | null;
  netmap?: {
    Peers?: Array<{ Name: string; Addresses?: string[]; AllowedIPs?: string[]; Created?: string }> | null;
    SelfNode?: { Name?: string; Created?: string; CapMap?: Record<string, unknown[] | null> | null };
  } | null;
}

export interface PolicyCase {
  /** Path of the capture file. */
  file: string;
  /** Folder of the file relative to the loaded root ('' at the root), e.g. `acl_results`. */
  folder: string;
  id: string;
  category: string;
  /** The policy exactly as posted (an object in the file is serialised with JSON.stringify). */
  policyText: string;
  /** The posted policy as plain data (HuJSON parsed here, not by the engine under test). */
  policyDoc: Record<string, unknown>;
  /** The message Tailscale answered with when it refused the policy; undefined when it accepted it. */
  rejection: string | undefined;
  /** Set when the capture itself failed: there is nothing to compare against. */
  captureError: string | undefined;
  tailnet: PolicyTailnet;
  /** Node name → id in `tailnet`, and back. Ids follow the nodes' creation order. */
  ids: Map<string, number>;
  names: Map<number, string>;
  captures: Record<string, CapturedNode>;
}

interface CaptureFile {
  test_id: string;
  category: string;
  error?: boolean;
  capture_error?: unknown;
  input: {
    full_policy: unknown;
    api_response_code?: number;
    api_response_body?: { message?: string } | null;
  };
  topology: {
    users: Array<{ id: number; name: string; email: string }>;
    nodes: Record<
      string,
      {
        tags?: string[] | null;
        ipv4?: string | null;
        ipv6?: string | null;
        user?: string | null;
        routable_ips?: string[] | null;
        approved_routes?: string[] | null;
      }
    >;
  };
  captures?: Record<string, CapturedNode> | null;
}

/** Every capture under `dir` (recursively, `*.hujson`), in path order. Throws when there are none. */
export function loadPolicyCases(dir: string): PolicyCase[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new Error(`no policy captures: ${dir} is not a folder (set WEFT_POLICY_CASES)`);
  const files = hujsonFiles(dir);
  if (files.length === 0) throw new Error(`no policy captures: no *.hujson files under ${dir}`);
  return files.map((file) => toCase(file, relative(dir, dirname(file)), readHuJson(file) as CaptureFile));
}

function hujsonFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...hujsonFiles(path));
    else if (entry.name.endsWith('.hujson')) out.push(path);
  }
  return out.sort();
}

function readHuJson(file: string): unknown {
  return parseHuJson(readFileSync(file, 'utf8'), file);
}

function parseHuJson(text: string, what: string): unknown {
  const errors: jsonc.ParseError[] = [];
  const value: unknown = jsonc.parse(text, errors, { allowTrailingComma: true });
  const first = errors[0];
  if (first !== undefined)
    throw new Error(
      `${what}: not HuJSON (${jsonc.printParseErrorCode(first.error)} at offset ${first.offset})`,
    );
  return value;
}

function toCase(file: string, folder: string, capture: CaptureFile): PolicyCase {
  const raw = capture.input.full_policy;
  const policyText = typeof raw === 'string' ? raw : JSON.stringify(raw);
  let policyDoc: Record<string, unknown> = {};
  try {
    const doc = typeof raw === 'string' ? parseHuJson(raw, `${file}: input.full_policy`) : raw;
    if (doc !== null && typeof doc === 'object' && !Array.isArray(doc))
      policyDoc = doc as Record<string, unknown>;
  } catch {
    // A policy that is not even HuJSON: only a refusal can be expected, and that needs no policyDoc.
  }
  const refused = capture.error === true || (capture.input.api_response_code ?? 200) !== 200;
  const captures = capture.captures ?? {};

  // Node ids follow creation order, which the netmaps record; the HA primary is the oldest router.
  const created = new Map<string, bigint>();
  const note = (name: string, when: string | undefined) => {
    const at = when === undefined ? undefined : createdNanos(when);
    if (at !== undefined && !created.has(name)) created.set(name, at);
  };
  for (const [name, seen] of Object.entries(captures)) {
    note(name, seen.netmap?.SelfNode?.Created);
    for (const peer of seen.netmap?.Peers ?? []) note(firstLabel(peer.Name), peer.Created);
  }
  const names = Object.keys(capture.topology.nodes).sort((a, b) => {
    const ca = created.get(a);
    const cb = created.get(b);
    if (ca !== undefined && cb !== undefined && ca !== cb) return ca < cb ? -1 : 1;
    if ((ca === undefined) !== (cb === undefined)) return ca !== undefined ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  });
  const ids = new Map(names.map((name, i) => [name, i + 1]));
  const users: PolicyUser[] = capture.topology.users.map((u) => ({ id: u.id, name: u.name, email: u.email }));
  const nodes = names.map((name): PolicyNode => {
    const node = capture.topology.nodes[name] ?? {};
    const tags = node.tags ?? [];
    const owner = tags.length > 0 || !node.user ? undefined : users.find((u) => u.name === node.user);
    return {
      id: ids.get(name) ?? 0,
      ipv4: node.ipv4 || null,
      ipv6: node.ipv6 || null,
      userId: owner?.id ?? null,
      tags,
      advertisedRoutes: node.routable_ips ?? [],
      approvedRoutes: node.approved_routes ?? [],
    };
  });
  return {
    file,
    folder,
    id: capture.test_id,
    category: capture.category,
    policyText,
    policyDoc,
    rejection: refused ? (capture.input.api_response_body?.message ?? '') : undefined,
    captureError:
      capture.capture_error === undefined || capture.capture_error === null || capture.capture_error === ''
        ? undefined
        : typeof capture.capture_error === 'string'
          ? capture.capture_error
          : JSON.stringify(capture.capture_error),
    tailnet: { users, nodes },
    ids,
    names: new Map(names.map((name, i) => [i + 1, name])),
    captures,
  };
}

/**
 * An RFC 3339 time in nanoseconds since the epoch. Go drops trailing zeros of the fraction, so the
 * strings differ in length and cannot be compared as text; Date.parse alone stops at milliseconds.
 */
export function createdNanos(text: string): bigint | undefined {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/i.exec(text);
  if (m === null) return undefined;
  const seconds = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(seconds)) return undefined;
  return BigInt(seconds) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/** `pikachu.tail1234.ts.net.` → `pikachu`. */
export function firstLabel(name: string): string {
  return name.split('.')[0] ?? name;
}
