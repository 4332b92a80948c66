/**
 * A minimal SOCKS5 client (RFC 1928, no authentication, CONNECT to an IPv4 address) for reaching tailnet
 * addresses through a userspace-networking tailscaled's --socks5-server.
 */
import { connect, type Socket } from 'node:net';

function readExactly(socket: Socket, length: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`SOCKS5: no reply within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < length) return;
      socket.pause();
      if (buffered.length > length) socket.unshift(buffered.subarray(length));
      finish(undefined, buffered.subarray(0, length));
    };
    const onEnd = () => finish(new Error('SOCKS5: the proxy closed the connection'));
    const finish = (err?: Error, data?: Buffer) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', finish);
      if (err !== undefined) reject(err);
      else resolve(data ?? Buffer.alloc(0));
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', finish);
    socket.resume();
  });
}

/**
 * Opens a TCP connection to `host:port` (an IPv4 literal) through the SOCKS5 proxy at `proxy` (host:port).
 * The socket comes back paused, so no byte is lost before the caller listens: call resume() after.
 */
export async function socks5Connect(
  proxy: string,
  host: string,
  port: number,
  timeoutMs = 15_000,
): Promise<Socket> {
  const at = proxy.lastIndexOf(':');
  const socket = connect(Number(proxy.slice(at + 1)), proxy.slice(0, at));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(Buffer.from([0x05, 0x01, 0x00]));
  const method = await readExactly(socket, 2, timeoutMs);
  if (method[0] !== 0x05 || method[1] !== 0x00)
    throw new Error(`SOCKS5: proxy refused no-auth (${method.toString('hex')})`);
  const address = host.split('.').map(Number);
  const request = Buffer.from([0x05, 0x01, 0x00, 0x01, ...address, port >> 8, port & 0xff]);
  socket.write(request);
  const reply = await readExactly(socket, 10, timeoutMs);
  if (reply[1] !== 0x00) {
    socket.destroy();
    throw new Error(`SOCKS5: CONNECT to ${host}:${port} failed with reply code ${reply[1]}`);
  }
  return socket;
}

/**
 * Sends `payload` through the SOCKS5 proxy to an echo service at host:port and returns what came back
 * (bounded by `timeoutMs`): proof that a TCP connection across the tailnet carries data both ways.
 */
export async function echoThroughSocks5(
  proxy: string,
  host: string,
  port: number,
  payload: string,
  timeoutMs = 15_000,
): Promise<string> {
  const socket = await socks5Connect(proxy, host, port);
  try {
    const echoed = new Promise<string>((resolve, reject) => {
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        text += chunk;
        if (text.length >= payload.length) resolve(text);
      });
      socket.once('error', reject);
      socket.resume();
      setTimeout(() => reject(new Error(`echo incomplete: ${JSON.stringify(text)}`)), timeoutMs).unref();
    });
    socket.write(payload);
    return await echoed;
  } finally {
    socket.destroy();
  }
}
