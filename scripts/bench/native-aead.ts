import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from "node:crypto";
import type * as Koffi from "koffi";
import { FfiUnavailableError, loadKoffi } from "../../src/sdwan/ffi.ts";

// A lever of issue #14 that did not pay, kept for scripts/bench/aead.ts to re-measure on a later Bun:
// AES-256-GCM two ways with one interface, as the record layer would use it:
// - native: OpenSSL's libcrypto through koffi, one EVP_CIPHER_CTX per key, initialised with the key
//   once and given only a new IV per record (the key schedule is computed once, not per packet), and
//   the ciphertext written straight into the caller's record buffer (5 koffi calls per record).
// - node: node:crypto, whose Cipher cannot take a new IV (Bun 1.4.5 has no such method, and update()
//   after final() throws), so every record builds a new one.
// On this box (Bun 1.4.5, AMD EPYC, libcrypto 3) native sealed about as fast as node:crypto with a
// KeyObject and opened slower: the five FFI calls cost about what Bun's BoringSSL Cipher costs.

export const AEAD_KEY_BYTES = 32;
export const AEAD_NONCE_BYTES = 12;
export const AEAD_TAG_BYTES = 16;

/** The libcrypto sonames tried in turn (OpenSSL 3, then 1.1; both have the EVP calls used here). */
export const LIBCRYPTO_SONAMES = ["libcrypto.so.3", "libcrypto.so.1.1"] as const;

export interface AeadKey {
  /** Encrypts `plaintext` into `ciphertext` (same length; may be the same memory) and writes the 16-byte tag. */
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): void;
  /** The plaintext, or null when the tag does not authenticate nonce, aad and ciphertext. */
  open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): Buffer | null;
  /** Erases the key; the key must not be used afterwards. */
  dispose(): void;
}

export interface Aead {
  readonly name: "native" | "node";
  /** A key for sealing and opening; the raw bytes are wiped. */
  key(raw: Buffer): AeadKey;
}

class NodeKey implements AeadKey {
  // A KeyObject copies the bytes and is faster per packet than a Buffer key.
  constructor(private readonly keyObject: KeyObject) {}

  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): void {
    // No { authTagLength } option: GCM's default tag is 16 bytes, and the options object measured
    // slower per packet in Bun 1.4.
    const cipher = createCipheriv("aes-256-gcm", this.keyObject, nonce);
    cipher.setAAD(aad);
    ciphertext.set(cipher.update(plaintext));
    cipher.final();
    tag.set(cipher.getAuthTag());
  }

  open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): Buffer | null {
    const decipher = createDecipheriv("aes-256-gcm", this.keyObject, nonce);
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    const plaintext = decipher.update(ciphertext);
    try {
      decipher.final();
    } catch {
      return null;
    }
    return plaintext;
  }

  dispose(): void {}
}

export const nodeAead: Aead = {
  name: "node",
  key(raw: Buffer): AeadKey {
    const key = new NodeKey(createSecretKey(raw));
    raw.fill(0);
    return key;
  },
};

const EVP_CTRL_GCM_GET_TAG = 0x10;
const EVP_CTRL_GCM_SET_TAG = 0x11;

// Pointer arguments that are always NULL are declared intptr_t and given 0: koffi converts a number
// faster than a null pointer.
interface EvpCalls {
  newContext(): unknown;
  freeContext(ctx: unknown): void;
  aes256Gcm(): unknown;
  encryptInitKey(ctx: unknown, cipher: unknown, impl: number, key: Uint8Array, iv: number): number;
  encryptInit(ctx: unknown, cipher: number, impl: number, key: number, iv: Uint8Array): number;
  encryptUpdate(ctx: unknown, out: Uint8Array, outLength: Int32Array, input: Uint8Array, inputLength: number): number;
  encryptAad(ctx: unknown, out: number, outLength: Int32Array, input: Uint8Array, inputLength: number): number;
  encryptFinal(ctx: unknown, out: number, outLength: Int32Array): number;
  decryptInit(ctx: unknown, cipher: number, impl: number, key: number, iv: Uint8Array): number;
  decryptUpdate(ctx: unknown, out: Uint8Array, outLength: Int32Array, input: Uint8Array, inputLength: number): number;
  decryptAad(ctx: unknown, out: number, outLength: Int32Array, input: Uint8Array, inputLength: number): number;
  decryptFinal(ctx: unknown, out: number, outLength: Int32Array): number;
  control(ctx: unknown, type: number, arg: number, pointer: Uint8Array): number;
}

function bindEvp(lib: Koffi.LibraryHandle): EvpCalls {
  const f = (prototype: string) => lib.func(prototype) as unknown as (...args: unknown[]) => never;
  return {
    newContext: f("void *EVP_CIPHER_CTX_new()"),
    freeContext: f("void EVP_CIPHER_CTX_free(void *ctx)"),
    aes256Gcm: f("void *EVP_aes_256_gcm()"),
    encryptInitKey: f("int EVP_EncryptInit_ex(void *ctx, void *cipher, intptr_t impl, uint8_t *key, intptr_t iv)"),
    encryptInit: f("int EVP_EncryptInit_ex(void *ctx, intptr_t cipher, intptr_t impl, intptr_t key, uint8_t *iv)"),
    encryptUpdate: f("int EVP_EncryptUpdate(void *ctx, uint8_t *out, int *outl, uint8_t *in, int inl)"),
    encryptAad: f("int EVP_EncryptUpdate(void *ctx, intptr_t out, int *outl, uint8_t *in, int inl)"),
    encryptFinal: f("int EVP_EncryptFinal_ex(void *ctx, intptr_t out, int *outl)"),
    decryptInit: f("int EVP_DecryptInit_ex(void *ctx, intptr_t cipher, intptr_t impl, intptr_t key, uint8_t *iv)"),
    decryptUpdate: f("int EVP_DecryptUpdate(void *ctx, uint8_t *out, int *outl, uint8_t *in, int inl)"),
    decryptAad: f("int EVP_DecryptUpdate(void *ctx, intptr_t out, int *outl, uint8_t *in, int inl)"),
    decryptFinal: f("int EVP_DecryptFinal_ex(void *ctx, intptr_t out, int *outl)"),
    control: f("int EVP_CIPHER_CTX_ctrl(void *ctx, int type, int arg, uint8_t *ptr)"),
  };
}

class NativeKey implements AeadKey {
  private ctx: unknown;
  private readonly outLength = new Int32Array(1);

  constructor(
    private readonly evp: EvpCalls,
    private readonly contexts: FinalizationRegistry<unknown>,
    raw: Buffer,
  ) {
    const ctx = evp.newContext();
    if (!ctx) throw new Error("EVP_CIPHER_CTX_new failed");
    if (evp.encryptInitKey(ctx, evp.aes256Gcm(), 0, raw, 0) !== 1) {
      evp.freeContext(ctx);
      throw new Error("EVP_EncryptInit_ex refused the AES-256-GCM key");
    }
    raw.fill(0);
    this.ctx = ctx;
    // A key dropped without dispose() (a session never destroyed) still frees its context.
    contexts.register(this, ctx, this);
  }

  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): void {
    const { evp, ctx, outLength } = this;
    // One failure check at the end: a call that fails leaves the context unusable for the next ones.
    const ok =
      evp.encryptInit(ctx, 0, 0, 0, nonce) &
      evp.encryptAad(ctx, 0, outLength, aad, aad.length) &
      evp.encryptUpdate(ctx, ciphertext, outLength, plaintext, plaintext.length) &
      evp.encryptFinal(ctx, 0, outLength) &
      evp.control(ctx, EVP_CTRL_GCM_GET_TAG, AEAD_TAG_BYTES, tag);
    if (ok !== 1) throw new Error("libcrypto failed to seal a record");
  }

  open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): Buffer | null {
    const { evp, ctx, outLength } = this;
    const plaintext = Buffer.allocUnsafe(ciphertext.length);
    const ok =
      evp.decryptInit(ctx, 0, 0, 0, nonce) &
      evp.decryptAad(ctx, 0, outLength, aad, aad.length) &
      evp.decryptUpdate(ctx, plaintext, outLength, ciphertext, ciphertext.length) &
      evp.control(ctx, EVP_CTRL_GCM_SET_TAG, AEAD_TAG_BYTES, tag) &
      evp.decryptFinal(ctx, 0, outLength);
    return ok === 1 ? plaintext : null;
  }

  dispose(): void {
    if (!this.ctx) return;
    this.contexts.unregister(this);
    this.evp.freeContext(this.ctx); // EVP_CIPHER_CTX_free cleanses the key schedule
    this.ctx = null;
  }
}

/** AES-256-GCM through libcrypto; throws FfiUnavailableError when koffi or the library cannot load. */
export function loadNativeAead(sonames: readonly string[] = LIBCRYPTO_SONAMES): Aead {
  const koffi = loadKoffi();
  const failures: string[] = [];
  for (const soname of sonames) {
    let evp: EvpCalls;
    try {
      evp = bindEvp(koffi.load(soname));
    } catch (err) {
      failures.push(`${soname}: ${(err as Error).message}`);
      continue;
    }
    const contexts = new FinalizationRegistry<unknown>((ctx) => evp.freeContext(ctx));
    return { name: "native", key: (raw) => new NativeKey(evp, contexts, raw) };
  }
  throw new FfiUnavailableError(`cannot load libcrypto (${failures.join("; ")})`);
}
