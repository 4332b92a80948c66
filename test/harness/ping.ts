/**
 * `tailscale ping` until a pong (bounded). A peer shows in `status` as soon as its node arrives, but the
 * client's engine takes it only once the peer's disco key is known (its first map request, moments
 * after registering); a ping in between answers "unknown peer". Waiting for it is what an admin does.
 *
 * Returns the ping's output. A ping that gets pongs only over DERP exits non-zero after its count
 * ("direct connection not established"), so `acceptRelayOnly` counts any pong as success.
 */
import type { TailscaledProcess } from './tailscale.ts';
import { eventually } from './wait.ts';

export async function pingPeer(
  from: TailscaledProcess,
  ip: string,
  options: { count?: number; acceptRelayOnly?: boolean; timeoutMs?: number } = {},
): Promise<string> {
  const count = String(options.count ?? 5);
  return eventually(
    `${from.name} pings ${ip}`,
    async () => {
      const ping = await from.cli(['ping', '--c', count, '--timeout', '3s', ip], { timeoutMs: 30_000 });
      if (ping.code === 0 || (options.acceptRelayOnly === true && /pong from/.test(ping.stdout))) {
        return ping.stdout;
      }
      throw new Error(`${ping.stdout}${ping.stderr}`.trim());
    },
    { timeoutMs: options.timeoutMs ?? 30_000 },
  );
}
