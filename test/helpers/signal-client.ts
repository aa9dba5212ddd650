// A raw signalling client for tests against a real inp2ps: logs in as inp2pc does, records every
// message, sends whatever it is told. (test/integration/signal.test.ts has a fuller one of its own.)
import type WsWebSocket from "ws";
import { generateIdentity, loginProof, loginTranscript, signWithIdentity, type Identity } from "../../src/crypto/index.ts";
import { waitFor, type ServerHandle } from "./processes.ts";

// The real `ws` implementation, loaded by path as src/client/session.ts does (Bun would swap the
// package for its own shim otherwise).
const WebSocket = require("../../node_modules/ws/lib/websocket.js") as typeof WsWebSocket;

export type Json = Record<string, any>;
const WAIT_MS = 5_000;

export function wsUrl(server: ServerHandle): string {
  return `${server.fingerprint ? "wss" : "ws"}://127.0.0.1:${server.port}/ws`;
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

  /** Connects and logs in as `node` of the user whose token is given; throws unless the login works. */
  static async online(server: ServerHandle, node: string, identity: Identity = generateIdentity(), token = server.token): Promise<SignalClient> {
    const socket = new WebSocket(wsUrl(server), { rejectUnauthorized: false, handshakeTimeout: WAIT_MS, perMessageDeflate: false });
    const client = new SignalClient(socket);
    await new Promise<void>((done, fail) => {
      socket.once("open", () => done());
      socket.once("close", (code) => fail(new Error(`WebSocket closed (${code}) before opening`)));
    });
    const { nonce } = await client.waitMessage("hello", (m) => m.type === "hello");
    const response = await client.request("login", {
      node,
      publicKey: identity.publicKey,
      proof: loginProof(token, nonce, node, identity.publicKey),
      signature: signWithIdentity(identity, loginTranscript(nonce, node, identity.publicKey)),
      version: "test-0",
    });
    if (!response.ok) {
      client.close();
      throw new Error(`login of ${node} refused: ${JSON.stringify(response.error)}`);
    }
    return client;
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
