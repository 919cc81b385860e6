// Port checks on 127.0.0.1 for the harnesses: picking free ports for parallel test files and
// refusing to start a daemon on a port something else already holds.
import { createSocket } from "node:dgram";
import { connect, createServer } from "node:net";

/** Why an exclusive TCP bind of 127.0.0.1:port fails right now; undefined when it succeeds. */
export function tcpBindError(port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", (err: NodeJS.ErrnoException) => resolve(err));
    srv.listen({ port, host: "127.0.0.1", exclusive: true }, () => srv.close(() => resolve(undefined)));
  });
}

/** undefined when 127.0.0.1:port can be bound for TCP, else the error code (or message). */
export async function tcpPortFree(port: number): Promise<string | undefined> {
  const err = await tcpBindError(port);
  return err && (err.code ?? err.message);
}

/** undefined when 127.0.0.1:port can be bound for UDP, else the error code (or message). */
export function udpPortFree(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = createSocket("udp4");
    sock.once("error", (err: NodeJS.ErrnoException) => {
      sock.close();
      resolve(err.code ?? err.message);
    });
    sock.bind(port, "127.0.0.1", () => sock.close(() => resolve(undefined)));
  });
}

/** True when something accepts TCP connections on 127.0.0.1:port (a bind test alone misses SO_REUSEPORT listeners). */
export function tcpListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: "127.0.0.1", port });
    sock.setTimeout(1000);
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("timeout", () => {
      sock.destroy();
      resolve(false);
    });
    sock.once("error", () => resolve(false));
  });
}

/** A TCP port on 127.0.0.1 that is free right now (for parallel test files). */
export async function freePort(): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen({ port: 0, host: "127.0.0.1" }, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A port on 127.0.0.1 free right now for both UDP and TCP (for the SIP transports). */
export async function freeSipPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const sock = createSocket("udp4");
      sock.once("error", reject);
      sock.bind(0, "127.0.0.1", () => {
        const p = sock.address().port;
        sock.close(() => resolve(p));
      });
    });
    if (!(await tcpPortFree(port)) && !(await tcpListening(port))) return port;
  }
  throw new Error("testbed: no port free for both UDP and TCP on 127.0.0.1");
}
