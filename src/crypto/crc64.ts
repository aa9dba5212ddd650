// CRC-64 with the ISO 3309 polynomial, bit-reflected, matching Go's hash/crc64 with crc64.ISO.
const ISO_POLY_REFLECTED = 0xd800000000000000n;
const MASK_64 = 0xffffffffffffffffn;

const table: bigint[] = Array.from({ length: 256 }, (_, i) => {
  let crc = BigInt(i);
  for (let bit = 0; bit < 8; bit++) crc = crc & 1n ? (crc >> 1n) ^ ISO_POLY_REFLECTED : crc >> 1n;
  return crc;
});

export function crc64Iso(data: Uint8Array | string): bigint {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  let crc = MASK_64;
  for (const byte of bytes) crc = table[Number((crc ^ BigInt(byte)) & 0xffn)]! ^ (crc >> 8n);
  return crc ^ MASK_64;
}
