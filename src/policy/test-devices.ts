/**
 * Stand-in devices for a policy's own tests. Tailscale checks `tests` and `sshTests` against the
 * policy, not against the devices that happen to exist: `"src": "alice@example.com"` means "a device
 * of alice" even before alice has one (or before alice ever logged in). weft checks tests against the
 * compiled per-node filters, so for every user, tag or group member a test names that has no device
 * yet, a device is added for the tests only — an address nobody holds (counting down from the top of
 * 100.64.0.0/10), owned by that user or carrying that tag. Real nodes are never changed, and the
 * policy compiled for the tailnet never sees these devices.
 */
import type { PolicyNode, PolicyTailnet, PolicyUser } from './api.ts';
import type { Policy } from './parse.ts';

/** The highest address of 100.64.0.0/10 below the broadcast-looking .255: 100.127.255.254. */
const TOP_OF_CGNAT = (100 << 24) + (127 << 16) + (255 << 8) + 254;

function ipv4Text(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

/** `alice@example.com:22` → `alice@example.com`; `[fd7a::1]:22` → `fd7a::1`. */
function hostOf(entry: string): string {
  const colon = entry.lastIndexOf(':');
  const host = colon < 0 ? entry : entry.slice(0, colon);
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** Every name a test or sshTest uses as a source or destination. */
function testNames(policy: Policy): string[] {
  const names: string[] = [];
  for (const test of policy.tests) names.push(test.src, ...[...test.accept, ...test.deny].map(hostOf));
  for (const test of policy.sshTests) names.push(test.src, ...test.dst);
  return names;
}

function matchesLogin(user: PolicyUser, login: string): boolean {
  return (user.email !== '' && user.email === login) || `${user.name}@` === login;
}

/** The tailnet plus stand-in devices for what the tests name; the same object when none are needed. */
export function withTestDevices(policy: Policy, tailnet: PolicyTailnet): PolicyTailnet {
  const users = [...tailnet.users];
  const nodes = [...tailnet.nodes];
  const used = new Set(nodes.map((n) => n.ipv4).filter((ip): ip is string => ip !== null));
  let nextUserId = Math.max(0, ...users.map((u) => u.id)) + 1;
  let nextNodeId = Math.max(0, ...nodes.map((n) => n.id)) + 1;
  let nextIp = TOP_OF_CGNAT;
  let added = false;

  const addDevice = (owner: { userId: number | null; tags: string[] }) => {
    while (used.has(ipv4Text(nextIp))) nextIp -= 1;
    const ipv4 = ipv4Text(nextIp);
    used.add(ipv4);
    const node: PolicyNode = {
      id: nextNodeId++,
      ipv4,
      ipv6: null,
      advertisedRoutes: [],
      approvedRoutes: [],
      ...owner,
    };
    nodes.push(node);
    added = true;
  };
  const ensureUserDevice = (login: string) => {
    let user = users.find((u) => matchesLogin(u, login));
    if (user === undefined) {
      const at = login.indexOf('@');
      user = { id: nextUserId++, name: login.slice(0, at), email: at === login.length - 1 ? '' : login };
      users.push(user);
    }
    const id = user.id;
    if (!nodes.some((n) => n.userId === id && n.tags.length === 0)) addDevice({ userId: id, tags: [] });
  };

  for (const name of new Set(testNames(policy))) {
    if (name.startsWith('tag:')) {
      if (policy.tagOwners.has(name) && !nodes.some((n) => n.tags.includes(name)))
        addDevice({ userId: null, tags: [name] });
    } else if (name.startsWith('group:')) {
      for (const login of policy.groups.get(name) ?? []) ensureUserDevice(login);
    } else if (name.includes('@') && !name.startsWith('autogroup:')) {
      ensureUserDevice(name);
    }
  }
  return added ? { ...tailnet, users, nodes } : tailnet;
}
