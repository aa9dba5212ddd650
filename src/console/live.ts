/** The console's live view is rendered at most this often, once for all browsers, and pushed when it changed. */
export const CONSOLE_PUSH_INTERVAL_MS = 1_000;
/** An idle stream gets a comment this often, so proxies and the browser keep it open. */
export const CONSOLE_KEEPALIVE_MS = 15_000;
/** Browsers (event streams) watching at once; more are refused. */
export const MAX_CONSOLE_STREAMS = 64;

const encoder = new TextEncoder();

/**
 * The live part of the console as one HTML fragment, pushed over server-sent events. While anyone
 * watches, it is rendered every CONSOLE_PUSH_INTERVAL_MS; a stream is pulled, so a browser that reads
 * slowly holds at most one fragment (the newest when it next reads) and never a queue.
 */
export class LiveView {
  private html = "";
  private version = 0;
  private streams = 0;
  private timer?: ReturnType<typeof setInterval>;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly render: () => string) {}

  /** A new event stream for a browser whose session `valid` says is still logged in; undefined when too many watch already. */
  stream(valid: () => boolean): ReadableStream<Uint8Array> | undefined {
    if (this.streams >= MAX_CONSOLE_STREAMS) return undefined;
    this.streams++;
    if (!this.timer) {
      this.refresh();
      this.timer = setInterval(() => this.refresh(), CONSOLE_PUSH_INTERVAL_MS);
      this.timer.unref?.();
    }
    let sent = -1;
    let open = true;
    const finish = () => {
      if (!open) return;
      open = false;
      if (--this.streams === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          if (sent === this.version) await this.changed(CONSOLE_KEEPALIVE_MS);
          if (!open) return;
          if (!valid()) {
            controller.enqueue(encoder.encode("event: logout\ndata: {}\n\n"));
            controller.close();
            return finish();
          }
          if (sent === this.version) return controller.enqueue(encoder.encode(": keep-alive\n\n"));
          sent = this.version;
          controller.enqueue(encoder.encode(`data: ${JSON.stringify(this.html)}\n\n`));
        },
        cancel: finish,
      },
      { highWaterMark: 0 },
    );
  }

  /** Renders now; streams waiting hear of it when it changed. */
  refresh(): void {
    let html: string;
    try {
      html = this.render();
    } catch (err) {
      html = `<p class="error">the console could not render: ${String((err as Error).message).replace(/[<&>]/g, "")}</p>`;
    }
    if (html === this.html) return;
    this.html = html;
    this.version++;
    for (const wake of this.waiters) wake();
    this.waiters.clear();
  }

  /** The current fragment (rendered now when nobody watches). */
  current(): string {
    if (!this.timer) this.refresh();
    return this.html;
  }

  private changed(timeoutMs: number): Promise<void> {
    return new Promise((done) => {
      const wake = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        done();
      };
      const timer = setTimeout(wake, timeoutMs);
      this.waiters.add(wake);
    });
  }
}
