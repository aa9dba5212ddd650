// A raw signalling client for tests against a real inp2ps: logs in as inp2pc does, records every
// message, sends whatever it is told. (test/integration/signal.test.ts has a fuller one of its own.)
import type WsWebSocket from "ws";
import { generateIdentity, loginProof, loginTranscript, signWithIdentity, type Identity } from "../../src/crypto/index.ts";
import { waitFor, type ServerHandle } from "./processes.ts";

// The real `ws` implementation, loaded by path as src/client/session.ts does (Bun would swap the
// package for its own shim otherwise).
const WebSocket = require("../../node_modules/ws/lib/websocket.js") as typeof WsWebSocket;

export type Json = Record<string, any>;
/** The server's HTTP answer to an upgrade it refused. */
export type Refused = { status: number; retryAfter?: string; body: string };
const WAIT_MS = 5_000;

/** The server's WebSocket URL, at 127.0.0.1 unless another host (an IPv6 one in brackets) is given. */
export function wsUrl(server: ServerHandle, host = "127.0.0.1"): string {
  return `${server.fingerprint ? "wss" : "ws"}://${host}:${server.port}/ws`;
}

export class SignalClient {
  readonly messages: Json[] = [];
  closed = false;
  private nextId = 1;

  private constructor(private readonly socket: WsWebSocket) {
    socket.on("message", (data) => this.messages.push(JSON.parse(data.toString())));
    socket.on("close", () => (this.closed = true));
    socket.on("error", () => {}); // the close event reports what happened
  }

  /**
   * Opens a WebSocket, from `localAddress` (any 127.x.y.z on loopback) and with extra request headers
   * when given; resolves with the client, or with the server's HTTP refusal of the upgrade.
   */
  static attempt(server: ServerHandle, options: { host?: string; localAddress?: string; headers?: Record<string, string> } = {}): Promise<{ client: SignalClient } | { refused: Refused }> {
    const { host, ...wsOptions } = options;
    const socket = new WebSocket(wsUrl(server, host), { rejectUnauthorized: false, handshakeTimeout: WAIT_MS, perMessageDeflate: false, ...wsOptions });
    const client = new SignalClient(socket);
    return new Promise((resolve, reject) => {
      socket.once("open", () => resolve({ client }));
      socket.once("unexpected-response", (_request, response) => {
        let text = "";
        response.on("data", (chunk: Buffer) => (text += chunk.toString()));
        response.on("end", () => {
          socket.terminate();
          resolve({ refused: { status: response.statusCode ?? 0, retryAfter: response.headers["retry-after"], body: text } });
        });
      });
      socket.once("close", (code) => reject(new Error(`WebSocket closed (${code}) before opening`)));
    });
  }

  /** Connects and logs in as `node` of the user whose token is given; throws unless the login works. */
  static async online(server: ServerHandle, node: string, identity: Identity = generateIdentity(), token = server.token): Promise<SignalClient> {
    const opened = await SignalClient.attempt(server);
    if ("refused" in opened) throw new Error(`WebSocket upgrade refused: ${opened.refused.status} ${opened.refused.body}`);
    const client = opened.client;
    const response = await client.login(node, token, identity);
    if (!response.ok) {
      client.close();
      throw new Error(`login of ${node} refused: ${JSON.stringify(response.error)}`);
    }
    return client;
  }

  /** Logs in as inp2pc does, on the nonce of the server's hello; resolves with the response (ok or not). */
  async login(node: string, token: string, identity: Identity = generateIdentity()): Promise<Json> {
    const { nonce } = await this.waitMessage("hello", (m) => m.type === "hello");
    return this.request("login", {
      node,
      publicKey: identity.publicKey,
      proof: loginProof(token, nonce, node, identity.publicKey),
      signature: signWithIdentity(identity, loginTranscript(nonce, node, identity.publicKey)),
      version: "test-0",
    });
  }

  waitMessage(what: string, match: (m: Json) => boolean, timeoutMs = WAIT_MS): Promise<Json> {
    return waitFor(what, () => this.messages.find(match), timeoutMs, 10);
  }

  /** Sends a request and resolves with its response (ok or not). */
  async request(type: string, fields: Json = {}): Promise<Json> {
    const id = this.send(type, fields);
    return this.waitMessage(`response to ${type} (id ${id})`, (m) => m.type === "response" && m.id === id);
  }

  /** Sends a request without waiting for its response (recorded with the rest); returns its id. */
  send(type: string, fields: Json = {}): number {
    const id = this.nextId++;
    this.socket.send(JSON.stringify({ type, id, ...fields }));
    return id;
  }

  close(): void {
    this.socket.terminate();
  }
}
