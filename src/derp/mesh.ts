/**
 * A mesh link: this server's connection, as a privileged client, to another DERP server of its region
 * (tailscale `derphttp/mesh_client.go`).
 *
 * The link presents the region's mesh key, sends WatchConns, and from then on learns from PeerPresent /
 * PeerGone which node keys are connected over there. Packets for those keys, when they have no local
 * connection, are handed over as ForwardPacket frames; the other server delivers them locally and never
 * forwards again, so there are no loops. A broken link forgets everything it reported and reconnects
 * every few seconds.
 */
import { NodePublic, type PrivateKey } from '../types/keys.ts';
import { DerpClient, type DerpClientOptions } from './client.ts';
import type { DerpLog, DerpServer, MeshForwarder } from './server.ts';
import { PeerGoneReason } from './wire.ts';

export interface MeshLinkOptions {
  url: string;
  privateKey: PrivateKey<'nodekey'>;
  meshKeyHex: string;
  server: DerpServer;
  log?: DerpLog;
  retryMs?: number;
  tls?: DerpClientOptions['tls'];
}

const DEFAULT_RETRY_MS = 5_000;
/** A forward that cannot be written for this long means the peer is stuck: drop the link (derper: 5 s). */
const FORWARD_WRITE_TIMEOUT_MS = 5_000;

export class MeshLink implements MeshForwarder {
  readonly name: string;
  readonly #options: MeshLinkOptions;
  #client: DerpClient | undefined;
  #retry: NodeJS.Timeout | undefined;
  #stuck: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: MeshLinkOptions) {
    this.#options = options;
    this.name = options.url;
  }

  get connected(): boolean {
    return this.#client !== undefined && !this.#client.closed;
  }

  start(): void {
    void this.#connect();
  }

  forward(srcRaw: Buffer, dstRaw: Buffer, data: Buffer): void {
    const client = this.#client;
    if (client === undefined) return;
    if (client.forward(srcRaw, dstRaw, data) || this.#stuck !== undefined) return;
    this.#stuck = setTimeout(() => client.close(), FORWARD_WRITE_TIMEOUT_MS);
    void client.drained().then(() => {
      clearTimeout(this.#stuck);
      this.#stuck = undefined;
    });
  }

  close(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
    clearTimeout(this.#stuck);
    this.#client?.close();
  }

  async #connect(): Promise<void> {
    const { url, privateKey, meshKeyHex, server, log } = this.#options;
    let client: DerpClient;
    try {
      client = await DerpClient.connect(url, privateKey, { meshKey: meshKeyHex, tls: this.#options.tls });
    } catch (err) {
      log?.warn({ mesh_peer: url, err: (err as Error).message }, 'DERP mesh link failed; retrying');
      this.#scheduleRetry();
      return;
    }
    if (this.#stopped) {
      client.close();
      return;
    }
    if (client.serverKey.equals(NodePublic.toRaw(server.publicKey))) {
      log?.warn({ mesh_peer: url }, 'DERP mesh_with names this server itself; ignoring that entry');
      client.close();
      return;
    }
    this.#client = client;
    client.events = {
      peerPresent: (key) => server.addForwarder(Buffer.from(key), this),
      peerGone: (key, reason) => {
        if (reason === PeerGoneReason.Disconnected) server.removeForwarder(Buffer.from(key), this);
      },
      close: () => {
        this.#client = undefined;
        server.removeForwarderEverywhere(this);
        if (!this.#stopped) {
          log?.warn({ mesh_peer: url }, 'DERP mesh link lost; reconnecting');
          this.#scheduleRetry();
        }
      },
    };
    client.watchConns();
    log?.info({ mesh_peer: url }, 'DERP mesh link up');
  }

  #scheduleRetry(): void {
    if (this.#stopped) return;
    this.#retry = setTimeout(() => void this.#connect(), this.#options.retryMs ?? DEFAULT_RETRY_MS);
    this.#retry.unref();
  }
}
