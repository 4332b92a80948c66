/**
 * DERP over HTTP: the `/derp` upgrade on weft's main listener (tailscale `derpserver/handler.go`).
 *
 *   GET /derp  Upgrade: DERP       → "101 Switching Protocols", then DERP frames on the raw stream
 *              Derp-Fast-Start: 1  → no HTTP response at all: DERP starts at once (the client learned
 *                                    the server key from the TLS certificate and will not read a 101)
 *              Upgrade: websocket  → RFC 6455 with subprotocol "derp"; the messages carry a byte stream
 *              + protocol "derp"     that is not aligned with frames (browser and wasm clients)
 *
 * Plain `Upgrade: WebSocket` without the subprotocol is treated as DERP: very old clients sent that and
 * then spoke raw DERP. Any other Upgrade value gets 426.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { DerpServer } from './server.ts';
import { MAX_FRAME_LENGTH, PROTOCOL_VERSION } from './wire.ts';

export const DERP_PATH = '/derp';

/** derper's TCP keep-alive period on DERP connections. */
const TCP_KEEPALIVE_MS = 10 * 60_000;

function pathOf(url: string | undefined): string {
  const path = url ?? '';
  const query = path.indexOf('?');
  return query === -1 ? path : path.slice(0, query);
}

/** `::ffff:1.2.3.4` (a dual-stack socket's view of an IPv4 peer) → `1.2.3.4`. */
export function unmapAddress(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export class DerpUpgradeHandler {
  readonly #server: DerpServer;
  readonly #webSockets = new WebSocketServer({
    noServer: true,
    // DERP payloads are encrypted and do not compress; tailscale turns compression off for the same reason.
    perMessageDeflate: false,
    maxPayload: MAX_FRAME_LENGTH + 5,
    handleProtocols: (protocols) => (protocols.has('derp') ? 'derp' : false),
  });

  constructor(server: DerpServer) {
    this.#server = server;
  }

  /** Takes the upgrade if it is for `/derp`; returns false for other paths. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    if (pathOf(req.url) !== DERP_PATH) return false;
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
    const protocols = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim().toLowerCase());
    const remoteAddress = unmapAddress(req.socket.remoteAddress);
    const remotePort = req.socket.remotePort ?? 0;
    if (upgrade === 'websocket' && protocols.includes('derp')) {
      this.#webSockets.handleUpgrade(req, socket, head, (ws) => {
        this.#server.accept(createWebSocketStream(ws), { remoteAddress, remotePort });
      });
      return true;
    }
    if (upgrade !== 'derp' && upgrade !== 'websocket') {
      socket.end(
        'HTTP/1.1 426 Upgrade Required\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nDERP requires connection upgrade\n',
      );
      return true;
    }
    tuneSocket(socket);
    if (req.headers['derp-fast-start'] !== '1') {
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n' +
          `Derp-Version: ${PROTOCOL_VERSION}\r\nDerp-Public-Key: ${this.#server.publicKey.slice('nodekey:'.length)}\r\n\r\n`,
      );
    }
    this.#server.accept(socket, { remoteAddress, remotePort, head });
    return true;
  }

  close(): void {
    this.#webSockets.close();
  }
}

/** Relayed packets are latency-sensitive and the connection lives for hours: no Nagle, TCP keep-alive. */
function tuneSocket(socket: Duplex): void {
  // A TLS socket wraps the TCP one; both expose the same methods.
  const tcp = socket as Socket;
  if (typeof tcp.setNoDelay !== 'function') return;
  tcp.setNoDelay(true);
  tcp.setKeepAlive(true, TCP_KEEPALIVE_MS);
  tcp.setTimeout(0);
}
