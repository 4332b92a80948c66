/**
 * Loader for policy captures in the format of shared/conformance (Headscale's testcapture files,
 * recorded against Tailscale's own control plane): each file becomes the policy text, the tailnet it
 * was applied to, and what every node received.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import jsonc from 'jsonc-parser';
import type { PolicyNode, PolicyTailnet } from '../../src/policy/index.ts';
import type { FilterRule, SSHRule } from '../../src/tailcfg/index.ts';

export interface CapturedNode {
  packet_filter_rules?: FilterRule[] | null;
  ssh_rules?: SSHRule[] | null;
  netmap?: {
    Peers?: Array<{ Name: string; AllowedIPs?: string[]; Created?: string }>;
    SelfNode?: { Created?: string; CapMap?: Record<string, unknown[] | null> };
  } | null;
}

export interface PolicyCase {
  file: string;
  id: string;
  category: string;
  policyText: string;
  /** The message Tailscale answered with when it refused the policy. */
  rejection: string | undefined;
  tailnet: PolicyTailnet;
  /** Node name → id in `tailnet`, and back. */
  ids: Map<string, number>;
  names: Map<number, string>;
  captures: Record<string, CapturedNode>;
}

interface CaptureFile {
  test_id: string;
  category: string;
  error?: boolean;
  capture_error?: unknown;
  input: { full_policy: unknown; api_response_code?: number; api_response_body?: { message?: string } };
  topology: {
    users: Array<{ id: number; name: string; email: string }>;
    nodes: Record<
      string,
      {
        tags?: string[];
        ipv4?: string;
        ipv6?: string;
        user?: string;
        routable_ips?: string[];
        approved_routes?: string[];
      }
    >;
  };
  captures?: Record<string, CapturedNode>;
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

export function loadPolicyCases(dir: string): PolicyCase[] {
  return hujsonFiles(dir)
    .map((file) => toCase(file, readCapture(file)))
    .filter((c): c is PolicyCase => c !== undefined);
}

function readCapture(file: string): CaptureFile {
  const errors: jsonc.ParseError[] = [];
  const value = jsonc.parse(readFileSync(file, 'utf8'), errors, { allowTrailingComma: true }) as CaptureFile;
  const first = errors[0];
  if (first !== undefined) throw new Error(`${file}: not HuJSON (${jsonc.printParseErrorCode(first.error)})`);
  return value;
}

function toCase(file: string, capture: CaptureFile): PolicyCase | undefined {
  if (capture.capture_error) return undefined; // the capture itself failed: nothing to compare against
  const raw = capture.input.full_policy;
  const policyText = typeof raw === 'string' ? raw : JSON.stringify(raw);
  const refused = capture.error === true || (capture.input.api_response_code ?? 200) !== 200;
  const captures = capture.captures ?? {};
  // Node ids follow creation order, which the netmaps record; the HA primary is the oldest router.
  const created = new Map<string, string>();
  for (const [name, seen] of Object.entries(captures)) {
    const self = seen.netmap?.SelfNode?.Created;
    if (self) created.set(name, self);
    for (const peer of seen.netmap?.Peers ?? [])
      if (peer.Created) created.set(firstLabel(peer.Name), peer.Created);
  }
  const names = Object.keys(capture.topology.nodes).sort((a, b) => {
    const ca = created.get(a);
    const cb = created.get(b);
    if (ca !== undefined && cb !== undefined) return Date.parse(ca) - Date.parse(cb) || ca.localeCompare(cb);
    if (ca !== undefined || cb !== undefined) return ca !== undefined ? -1 : 1;
    return a.localeCompare(b);
  });
  const ids = new Map(names.map((name, i) => [name, i + 1]));
  const users = capture.topology.users.map((u) => ({ id: u.id, name: u.name, email: u.email }));
  const nodes = names.map((name): PolicyNode => {
    const node = capture.topology.nodes[name] ?? {};
    return {
      id: ids.get(name) ?? 0,
      ipv4: node.ipv4 ?? null,
      ipv6: node.ipv6 ?? null,
      userId: node.user === undefined ? null : (users.find((u) => u.name === node.user)?.id ?? null),
      tags: node.tags ?? [],
      advertisedRoutes: node.routable_ips ?? [],
      approvedRoutes: node.approved_routes ?? [],
    };
  });
  return {
    file,
    id: capture.test_id,
    category: capture.category,
    policyText,
    rejection: refused ? (capture.input.api_response_body?.message ?? '') : undefined,
    tailnet: { users, nodes },
    ids,
    names: new Map(names.map((name, i) => [i + 1, name])),
    captures,
  };
}

export function firstLabel(name: string): string {
  return name.split('.')[0] ?? name;
}
