/** The client PKI's trust list, from the operator's side: what was refused and how to trust it. */
import { createHash, X509Certificate } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

/** Where an untrusted certificate is moved to trust it, under the PKI folder. */
export const trustedCertsDir = (pkiDir: string): string => join(pkiDir, "trusted", "certs");
export const rejectedDir = (pkiDir: string): string => join(pkiDir, "rejected");

/** The first certificate of a DER chain (servers may send their issuers after it). */
export function firstCertificate(der: Buffer): Buffer {
  if (der.length < 2 || der[0] !== 0x30) return der;
  let length = der[1] ?? 0;
  let offset = 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (der[2 + i] ?? 0);
    offset = 2 + n;
  }
  return der.subarray(0, Math.min(der.length, offset + length));
}

const sha1 = (der: Buffer): string => createHash("sha1").update(der).digest("hex");

/**
 * The file in `<pkiDir>/rejected/` holding this certificate (PEM or DER), found by its SHA-1
 * thumbprint whatever the PKI named it; undefined when there is none.
 */
export async function findRejectedFile(pkiDir: string, chain: Buffer): Promise<string | undefined> {
  const wanted = sha1(firstCertificate(chain));
  const dir = rejectedDir(pkiDir);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return undefined;
  }
  for (const name of names.sort()) {
    const file = join(dir, name);
    try {
      if (sha1(new X509Certificate(await readFile(file)).raw) === wanted) return file;
    } catch {
      // not a certificate
    }
  }
  return undefined;
}

/** Quotes a path for a POSIX shell. */
export const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The command an operator runs to trust a rejected certificate. */
export function trustCommand(pkiDir: string, rejectedFile: string): string {
  return `mv ${shellQuote(rejectedFile)} ${shellQuote(trustedCertsDir(pkiDir) + "/")}`;
}

/** The subject and thumbprint of a certificate, for logs. */
export function describeCertificate(chain: Buffer): { subject?: string; thumbprint: string } {
  const der = firstCertificate(chain);
  try {
    const c = new X509Certificate(der);
    return { subject: c.subject.replace(/\n/g, ", "), thumbprint: sha1(der) };
  } catch {
    return { thumbprint: sha1(der) };
  }
}
