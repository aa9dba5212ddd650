// The configs config/container/compose.example.yml mounts are valid once the token placeholder is
// replaced, and set what the compose example relies on: SDWAN on both sides, the service name as host.

import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, test } from "vitest";
import { checkRequired, parseConfig } from "../../src/config/index.ts";

const CONTAINER_DIR = resolve(import.meta.dirname, "../../config/container");
const TOKEN = "1234567890123";

function load(file: string) {
  const path = join(CONTAINER_DIR, file);
  const text = readFileSync(path, "utf8");
  expect(text, file).toContain('"<your token>"');
  const config = parseConfig(text.replace('"<your token>"', `"${TOKEN}"`), path);
  checkRequired(config, path);
  return config;
}

describe("container example configs", () => {
  test("the server's parses, with an SDWAN subnet", () => {
    const config = load("inp2ps.toml");
    expect(config.role).toBe("server");
    expect(config.server?.sdwan?.subnet).toBe("10.10.0.0/24");
  });

  test("the client's parses, reaches the compose service `server` and joins the SDWAN", () => {
    const config = load("inp2pc.toml");
    expect(config.role).toBe("client");
    expect(config.client?.server_host).toBe("server");
    expect(config.client?.sdwan?.enabled).toBe(true);
    expect(readFileSync(join(CONTAINER_DIR, "compose.example.yml"), "utf8")).toMatch(/^  server:$/m);
  });
});
