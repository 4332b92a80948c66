/**
 * The embedded DERP relay and STUN server, wired to the tailnet:
 *
 *   /derp                 upgrade → DerpServer (admission: node keys of registered, unexpired nodes)
 *   /derp/probe,          200, empty: netcheck's HTTPS latency fallback and browser clients' probe
 *   /derp/latency-check
 *   /generate_204         204 with the X-Tailscale-Response challenge echo (captive-portal check)
 *   POST /verify          admission for an external `derper --verify-client-url`
 *   UDP stun_listen_addr  STUN Binding → XOR-MAPPED-ADDRESS
 *   mesh_with             a mesh link to each other server of the region
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { type Config, parseHostPort } from '../config/index.ts';
import { DerpServer, DerpUpgradeHandler, MeshLink } from '../derp/index.ts';
import type { Logger } from '../observe/logger.ts';
import { isExpired } from '../state/model.ts';
import type { Tailnet } from '../state/tailnet.ts';
import { type StunServer, startStunServer } from '../stun/index.ts';
import type { DERPRegion } from '../tailcfg/index.ts';
import { NodePublic } from '../types/keys.ts';
import { embeddedRegion } from './derp-map.ts';
import { StartupError } from './errors.ts';
import { loadOrCreateDerpKey } from './server-key.ts';

export interface EmbeddedDerp {
  readonly server: DerpServer;
  readonly upgrades: DerpUpgradeHandler;
  readonly stun: StunServer | undefined;
  /** The region to advertise, or undefined when automatically_add_embedded_derp_region is off. */
  readonly region: DERPRegion | undefined;
  close(): Promise<void>;
}

/** derper reads at most 4 KiB of a verify response; the request is as small. */
const VERIFY_BODY_LIMIT = 4096;

/**
 * A node key may use the relay while its node is registered, not expired, and approved (a node waiting
 * for device approval is not in the tailnet yet: it has no peers to relay to, and none may reach it).
 */
export function isAdmitted(tailnet: Tailnet, key: NodePublic): boolean {
  const node = tailnet.nodeByKey(key);
  if (node === undefined || !node.authorized) return false;
  return !isExpired(node, tailnet.now());
}

export async function startEmbeddedDerp(
  config: Config,
  tailnet: Tailnet,
  log: Logger,
  /** The listener's PEM certificate, when it serves TLS. */
  tlsCert?: Buffer,
): Promise<EmbeddedDerp> {
  const settings = config.derp.server;
  const keyPath = isAbsolute(settings.private_key_path)
    ? settings.private_key_path
    : join(config.data_dir, settings.private_key_path);
  const privateKey = await loadOrCreateDerpKey(keyPath);
  const meshKeyHex =
    settings.mesh_key_path === undefined ? undefined : await readMeshKey(settings.mesh_key_path);
  // Everything that can fail comes before the first socket or subscription, so a failed start leaves
  // nothing running behind it.
  const certName = tlsCert === undefined ? undefined : selfSignedPin(tlsCert);
  const derpLog = log.child({ component: 'derp' });
  const server = new DerpServer({
    privateKey,
    ...(meshKeyHex !== undefined ? { meshKey: Buffer.from(meshKeyHex, 'hex') } : {}),
    ...(settings.verify_clients ? { admit: (key: NodePublic) => isAdmitted(tailnet, key) } : {}),
    log: derpLog,
  });
  const stun = await startStun(settings.stun_listen_addr, log);
  const unsubscribe = settings.verify_clients ? revokeOnChange(tailnet, server) : () => {};
  const links = (meshKeyHex === undefined ? [] : settings.mesh_with).map(
    (url) => new MeshLink({ url, privateKey, meshKeyHex: meshKeyHex ?? '', server, log: derpLog }),
  );
  for (const link of links) link.start();
  const region = settings.automatically_add_embedded_derp_region
    ? embeddedRegion(config, { stunPort: stun?.port, ...(certName !== undefined ? { certName } : {}) })
    : undefined;
  const upgrades = new DerpUpgradeHandler(server);
  derpLog.info(
    {
      derp_key: server.publicKey,
      stun: stun === undefined ? null : `${stun.address}:${stun.port}`,
      region: region?.RegionID ?? null,
    },
    'embedded DERP relay ready',
  );
  let closing: Promise<void> | undefined;
  return {
    server,
    upgrades,
    stun,
    region,
    close() {
      closing ??= (async () => {
        unsubscribe();
        for (const link of links) link.close();
        upgrades.close();
        server.close();
        await stun?.close();
      })();
      return closing;
    },
  };
}

/**
 * Admission is checked at connect, so a node deleted, expired or re-keyed later must lose the relay for
 * the key it no longer holds.
 */
function revokeOnChange(tailnet: Tailnet, server: DerpServer): () => void {
  const keys = new Map<number, NodePublic>();
  for (const node of tailnet.nodes()) keys.set(node.id, node.nodeKey);
  return tailnet.subscribe((change) => {
    const { node } = change;
    const previous = keys.get(node.id);
    if (change.kind === 'removed') {
      keys.delete(node.id);
      server.closeClient(node.nodeKey, 'node deleted');
      return;
    }
    keys.set(node.id, node.nodeKey);
    if (previous !== undefined && previous !== node.nodeKey) server.closeClient(previous, 'node key rotated');
    if (change.kind === 'updated' && isExpired(node, tailnet.now()))
      server.closeClient(node.nodeKey, 'node expired');
    if (change.kind === 'updated' && !node.authorized) server.closeClient(node.nodeKey, 'node de-authorized');
  });
}

async function startStun(listenAddr: string, log: Logger): Promise<StunServer | undefined> {
  if (listenAddr === '') return undefined;
  const { host, port } = parseHostPort(listenAddr);
  try {
    return await startStunServer({ address: host, port, log: log.child({ component: 'stun' }) });
  } catch (err) {
    throw new StartupError((err as Error).message, { cause: err });
  }
}

async function readMeshKey(path: string): Promise<string> {
  let text: string;
  try {
    text = (await readFile(path, 'utf8')).trim();
  } catch (err) {
    throw new StartupError(
      `cannot read the DERP mesh key ${path} (derp.server.mesh_key_path): ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  // An all-zero key is "no key" in Go's derper; accepting it would make a zero key a privilege.
  if (!/^[0-9a-fA-F]{64}$/.test(text) || /^0+$/.test(text)) {
    throw new StartupError(
      `the DERP mesh key ${path} (derp.server.mesh_key_path) must be 64 hex digits, not all zero`,
    );
  }
  return text.toLowerCase();
}

/**
 * `sha256-raw:<hex of the DER>` for a self-signed certificate, which clients cannot verify against a CA
 * but accept when the DERP map pins it; undefined for a CA-issued one (clients verify it normally).
 */
export function selfSignedPin(pem: Buffer): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new StartupError(`tls_cert_path does not hold a PEM certificate: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (cert.issuer !== cert.subject || !cert.verify(cert.publicKey)) return undefined;
  return `sha256-raw:${createHash('sha256').update(cert.raw).digest('hex')}`;
}

/** The plain HTTP side of DERP on the main listener. */
export function registerDerpRoutes(app: FastifyInstance): void {
  for (const url of ['/derp/probe', '/derp/latency-check']) {
    app.route({
      method: ['GET', 'HEAD'],
      url,
      handler: (_request, reply) => reply.code(200).header('access-control-allow-origin', '*').send(),
    });
  }
  app.get('/derp', (_request, reply) =>
    reply.code(426).type('text/plain').send('DERP requires connection upgrade\n'),
  );
  app.get('/generate_204', (request, reply) => {
    const challenge = request.headers['x-tailscale-challenge'];
    reply.header('cache-control', 'no-cache, no-store, must-revalidate, no-transform, max-age=0');
    if (typeof challenge === 'string' && /^[A-Za-z0-9._:-]{1,64}$/.test(challenge)) {
      reply.header('x-tailscale-response', `response ${challenge}`);
    }
    return reply.code(204).send();
  });
}

/**
 * `POST /verify`: admission for an external `derper --verify-client-url`, served even without the embedded
 * relay. derper posts JSON without a JSON content type, so this route reads its body whatever the type.
 */
export function registerVerifyRoute(app: FastifyInstance, tailnet: Tailnet): void {
  const usage = 'the body must be {"NodePublic":"nodekey:<64 hex digits>","Source":"<ip>"}';
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      '*',
      { parseAs: 'string', bodyLimit: VERIFY_BODY_LIMIT },
      (_request, body, done) => {
        try {
          done(null, JSON.parse(String(body)));
        } catch {
          done(null, undefined);
        }
      },
    );
    scope.post('/verify', (request, reply) => {
      const body = request.body as { NodePublic?: unknown } | undefined;
      const key = typeof body?.NodePublic === 'string' ? NodePublic.tryParse(body.NodePublic) : undefined;
      if (key === undefined) return reply.code(400).send({ error: usage });
      return reply.send({ Allow: isAdmitted(tailnet, key) });
    });
  });
}
