import { randomBytes } from "node:crypto";
import { safeEqualText } from "../crypto/index.ts";

/** A console login lasts this long (not extended by use); then the admin logs in again. */
export const CONSOLE_SESSION_TTL_MS = 12 * 60 * 60 * 1000;
/** Console sessions kept at once; a new login beyond it ends the oldest. */
export const MAX_CONSOLE_SESSIONS = 32;
/** Random bytes of a session id and of its CSRF token. */
const SECRET_BYTES = 32;

export interface ConsoleSession {
  id: string;
  /** Sent back by the page's script with every POST; a cross-site form cannot know it. */
  csrf: string;
  expiresAt: number;
}

/** The admin's console sessions, server-side: the cookie holds only the random id. */
export class ConsoleSessions {
  private readonly byId = new Map<string, ConsoleSession>();

  constructor(private readonly now: () => number = Date.now) {}

  create(): ConsoleSession {
    this.dropExpired();
    if (this.byId.size >= MAX_CONSOLE_SESSIONS) this.byId.delete(this.byId.keys().next().value!);
    const session = { id: randomBytes(SECRET_BYTES).toString("base64url"), csrf: randomBytes(SECRET_BYTES).toString("base64url"), expiresAt: this.now() + CONSOLE_SESSION_TTL_MS };
    this.byId.set(session.id, session);
    return session;
  }

  /** The live session with this id, if any. */
  get(id: string | undefined): ConsoleSession | undefined {
    if (!id) return undefined;
    const session = this.byId.get(id);
    if (!session) return undefined;
    if (session.expiresAt <= this.now()) {
      this.byId.delete(id);
      return undefined;
    }
    return session;
  }

  /** Whether `given` is the session's CSRF token (compared in constant time). */
  checkCsrf(session: ConsoleSession, given: string | undefined): boolean {
    return given !== undefined && safeEqualText(given, session.csrf);
  }

  end(id: string): void {
    this.byId.delete(id);
  }

  get size(): number {
    return this.byId.size;
  }

  private dropExpired(): void {
    const now = this.now();
    for (const [id, session] of this.byId) if (session.expiresAt <= now) this.byId.delete(id);
  }
}
