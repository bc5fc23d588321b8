/**
 * A TCP proxy in front of a real server that breaks connections on purpose: the way a flaky
 * network or a restarted load balancer looks to a client. Requests pass unchanged (an S3
 * client signs for the proxy's host, which is the Host header the server receives).
 */
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface ProxyStats {
  connections: number;
  /** Connections the proxy broke. */
  cuts: number;
  /** Bytes passed from the server to clients. */
  bytesToClients: number;
}

export interface TcpProxy {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly stats: ProxyStats;
  /**
   * Decides, per new connection (0-based), after how many bytes from the server it breaks;
   * undefined passes it whole.
   */
  cutAfter: (connection: number) => number | undefined;
  /** Refuse new connections and break the open ones, as a server that went away. */
  goAway(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(upstreamPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const stats: ProxyStats = { connections: 0, cuts: 0, bytesToClients: 0 };
  let away = false;
  const proxy: TcpProxy = {
    endpoint: '',
    stats,
    cutAfter: () => undefined,
    goAway() {
      away = true;
      for (const socket of sockets) socket.destroy();
    },
    close: () =>
      new Promise<void>((done) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => done());
      }),
  };
  const server: Server = createServer((client) => {
    if (away) return client.destroy();
    const index = stats.connections++;
    const limit = proxy.cutAfter(index);
    const upstream = createConnection({ host: '127.0.0.1', port: upstreamPort });
    sockets.add(client);
    sockets.add(upstream);
    let passed = 0;
    let broken = false;
    const cut = (): void => {
      if (broken) return;
      broken = true;
      stats.cuts++;
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (data: Buffer) => upstream.write(data));
    upstream.on('data', (data: Buffer) => {
      if (broken) return;
      if (limit !== undefined && passed + data.length >= limit) {
        const part = data.subarray(0, Math.max(0, limit - passed));
        passed += part.length;
        stats.bytesToClients += part.length;
        if (part.length > 0) client.write(part, cut);
        else cut();
        return;
      }
      passed += data.length;
      stats.bytesToClients += data.length;
      client.write(data);
    });
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', close);
    upstream.on('close', close);
    client.on('error', close);
    upstream.on('error', close);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  Object.assign(proxy, { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
  return proxy;
}
