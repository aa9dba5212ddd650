import { hmacSha256 } from "./token.ts";

// The login proof: the client shows it knows the user's token without sending it, bound to the
// server's one-time nonce, the node name and the node's identity key.
const LOGIN_PROOF_LABEL = "inp2p login v1";

export function loginTranscript(nonce: string, node: string, publicKey: string): Buffer {
  return hmacSha256(LOGIN_PROOF_LABEL, nonce, node, publicKey);
}

export function loginProof(token: string, nonce: string, node: string, publicKey: string): string {
  return hmacSha256(token, LOGIN_PROOF_LABEL, nonce, node, publicKey).toString("base64url");
}
