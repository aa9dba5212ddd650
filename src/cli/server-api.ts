import { readFileSync } from "node:fs";
import { join } from "node:path";
import { adminCredentialFile, readAdminCredential, SELF_SIGNED_CERT_FILE } from "../server/index.ts";

export interface ServerApiSettings {
  ws_port: number;
  admin_token?: string;
  tls: "auto" | "off";
  tls_cert?: string;
  data_dir: string;
}

/**
 * Calls the REST API of the inp2ps this config belongs to, with its admin credential (admin_token, or
 * the file inp2ps keeps in its data dir; never a user token). The server's own certificate (from its
 * data dir, or tls_cert) is the only one trusted, so the credential goes nowhere else.
 */
export async function fetchServerApi(settings: ServerApiSettings, method: string, path: string, host = "127.0.0.1"): Promise<unknown> {
  const admin = readAdminCredential(settings);
  if (!admin)
    throw new Error(
      `no admin credential: admin_token is not set in [server] and ${adminCredentialFile(settings.data_dir)} does not exist: has this inp2ps started once with this config?`,
    );
  const tls = settings.tls !== "off";
  const certFile = settings.tls_cert || join(settings.data_dir, SELF_SIGNED_CERT_FILE);
  let ca: string | undefined;
  if (tls) {
    try {
      ca = readFileSync(certFile, "utf8");
    } catch {
      throw new Error(`cannot read the server certificate ${certFile}: has this inp2ps started once with this config?`);
    }
  }
  const url = `${tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${settings.ws_port}${path}`;
  let response: Response;
  try {
    response = await fetch(url, { method, headers: { authorization: `Bearer ${admin.secret}` }, ...(ca ? { tls: { ca } } : {}) });
  } catch (err) {
    throw new Error(`cannot reach inp2ps at ${url}: ${(err as Error).message}`);
  }
  const body = (await response.json().catch(() => ({}))) as { error?: string };
  if (!response.ok) throw new Error(`server answered ${response.status}: ${body.error ?? response.statusText}`);
  return body;
}
