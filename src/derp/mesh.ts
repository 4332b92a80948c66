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
const SILENCE_LIMIT_MS = 120_000;

export class MeshLink implements MeshForwarder {
  readonly name: string;
  readonly #options: MeshLinkOptions;
  #client: DerpClient | undefined;
  #retry: NodeJS.Timeout | undefined;
  #stuck: NodeJS.Timeout | undefined;
  #stopped = false;
  #silence: NodeJS.Timeout | undefined;

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

  forward(srcRaw: Buffer, dstRaw: Buffer, data: Buffer): boolean {
    const client = this.#client;
    if (client === undefined) return false;
    // A peer that is not reading gets at most one socket buffer's worth: drop rather than buffer (derper
    // blocks the sender instead, which a shared event loop cannot do), and give up on it after a while.
    if (client.needsDrain) {
      this.#armStuckTimer(client);
      return false;
    }
    if (!client.forward(srcRaw, dstRaw, data)) this.#armStuckTimer(client);
    return true;
  }

  #armStuckTimer(client: DerpClient): void {
    if (this.#stuck !== undefined) return;
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
    clearInterval(this.#silence);
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
      // Any reason: gone from there (disconnected) or never there (not here), it is not reachable via them.
      peerGone: (key) => server.removeForwarder(Buffer.from(key), this),
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
    this.#watchSilence(client);
    log?.info({ mesh_peer: url }, 'DERP mesh link up');
  }

  /**
   * A peer that vanished without a reset (power loss, partition) would keep every key it reported routed
   * into the void. The server sends keep-alives every minute, so two minutes of silence mean it is gone
   * (tailscaled's DERP client uses the same 120 s read timeout).
   */
  #watchSilence(client: DerpClient): void {
    clearInterval(this.#silence);
    this.#silence = setInterval(() => {
      if (client.closed) clearInterval(this.#silence);
      else if (performance.now() - client.lastFrameAt > SILENCE_LIMIT_MS) client.close();
    }, SILENCE_LIMIT_MS / 4);
    this.#silence.unref();
  }

  #scheduleRetry(): void {
    if (this.#stopped) return;
    this.#retry = setTimeout(() => void this.#connect(), this.#options.retryMs ?? DEFAULT_RETRY_MS);
    this.#retry.unref();
  }
}
