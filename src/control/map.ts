/**
 * `POST /machine/map`: the three kinds of map request (docs/control-protocol.md §6.2).
 *
 *   Stream  OmitPeers
 *   true    -          long poll: 200 at once, the full map, then deltas and keep-alives until the client goes
 *   false   true       lite update: store endpoints / hostinfo / disco key, answer 200 with no body
 *   false   false      one-shot: exactly one full map
 */
import type { ServerHttp2Stream } from 'node:http2';
import type { MapBroadcaster } from '../mapper/broadcaster.ts';
import type { MapSession } from '../mapper/session.ts';
import type { Logger } from '../observe/logger.ts';
import type { Tailnet } from '../state/tailnet.ts';
import {
  type MapRequest,
  MIN_SUPPORTED_CAPABILITY_VERSION,
  unsupportedVersionMessage,
} from '../tailcfg/index.ts';
import type { MachinePublic } from '../types/keys.ts';

export interface MapContext {
  tailnet: Tailnet;
  broadcaster: MapBroadcaster;
  log: Logger;
  machineKey: MachinePublic;
  /** The streaming sessions of this server, by node id, so a new long poll can supersede the old one. */
  streams: Map<number, MapSession>;
}

function reply(stream: ServerHttp2Stream, status: number, text: string): void {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8' });
  stream.end(`${text}\n`);
}

export function handleMap(stream: ServerHttp2Stream, request: MapRequest, ctx: MapContext): void {
  const { tailnet, broadcaster, log, machineKey } = ctx;
  if (request.Version < MIN_SUPPORTED_CAPABILITY_VERSION) {
    reply(stream, 400, unsupportedVersionMessage(request.Version));
    return;
  }
  const node = request.NodeKey === undefined ? undefined : tailnet.nodeByKey(request.NodeKey);
  if (node === undefined) {
    reply(stream, 404, 'node not found: register first');
    return;
  }
  if (node.machineKey !== machineKey) {
    log.warn({ node: node.id, machine_key: machineKey }, 'map refused: node key belongs to another machine');
    reply(stream, 403, 'this node key is registered to a different machine');
    return;
  }
  const streaming = request.Stream === true;
  tailnet.applyMapUpdate(
    node,
    {
      discoKey: request.DiscoKey,
      endpoints: request.Endpoints,
      hostinfo: request.Hostinfo,
      capVersion: request.Version,
    },
    streaming,
  );
  const compression = request.Compress === 'zstd' ? 'zstd' : 'none';

  if (!streaming) {
    if (request.OmitPeers === true) {
      stream.respond({ ':status': 200 });
      stream.end();
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
    Promise.resolve(broadcaster.fullMapFrame(node, compression)).then(
      (frame) => stream.end(frame),
      (err: unknown) => {
        log.error({ err, node: node.id }, 'could not build a map');
        stream.close();
      },
    );
    return;
  }

  // Headers go out at once: the client's 120 s watchdog is already running while it waits for them.
  stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
  ctx.streams.get(node.id)?.close(); // a new long poll of the same node supersedes the old one
  const session = broadcaster.openSession(node, stream, compression);
  ctx.streams.set(node.id, session);
  tailnet.sessionOpened(node);
  log.debug({ node: node.id, name: node.givenName, cap: request.Version }, 'map stream opened');
  stream.once('close', () => {
    session.close();
    if (ctx.streams.get(node.id) === session) ctx.streams.delete(node.id);
    tailnet.sessionClosed(node);
    log.debug({ node: node.id, name: node.givenName }, 'map stream closed');
  });
}
