// The certificate and key the daemon serves TLS with when it listens beyond this machine
// (`p2pz serve --listen ADDR --tls-cert FILE --tls-key FILE`; docs/TEAM.md). Both files are read and
// checked before anything listens, so that each mistake is refused at start with its own code and a
// hint: one of the two missing (E_TLS_INCOMPLETE), a file that cannot be read or is not PEM
// (E_TLS_UNREADABLE), a key that is not the certificate's (E_TLS_MISMATCH). Messages name the flag,
// never the path.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { P2pzError } from '../../shared/protocol/index.js';

export interface TlsFiles {
  /** PEM certificate (chain: leaf first, then intermediates). */
  readonly certFile?: string;
  /** PEM private key, unencrypted. */
  readonly keyFile?: string;
}

/** What node:https needs, plus the facts the start-up log reports. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** The leaf certificate's subject alternative names, as OpenSSL prints them. */
  readonly subjectAltName: string;
  readonly validTo: Date;
  /** SHA-256 fingerprint of the leaf certificate (`AB:CD:…`), pinned by CLI commands. */
  readonly fingerprint256: string;
}

export const TLS_DEFAULTS = Object.freeze({
  /** Oldest protocol version the daemon accepts. */
  minVersion: 'TLSv1.2' as const,
});

async function readPem(flag: string, file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new P2pzError('E_TLS_UNREADABLE', `${flag} could not be read (${code}).`);
  }
}

/** Reads and checks the pair; undefined when neither flag was given. */
export async function loadTls(files: TlsFiles): Promise<TlsMaterial | undefined> {
  const { certFile, keyFile } = files;
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) {
    throw new P2pzError('E_TLS_INCOMPLETE', certFile === undefined ? '--tls-key was given without --tls-cert.' : '--tls-cert was given without --tls-key.');
  }
  const cert = await readPem('--tls-cert', certFile);
  const key = await readPem('--tls-key', keyFile);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw new P2pzError('E_TLS_UNREADABLE', '--tls-cert is not a PEM certificate.');
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new P2pzError('E_TLS_UNREADABLE', '--tls-key is not an unencrypted PEM private key.');
  }
  if (!x509.checkPrivateKey(privateKey)) throw new P2pzError('E_TLS_MISMATCH');
  try {
    // What node:https will do with them; refuses what the checks above let through (a bad chain).
    createSecureContext({ cert, key, minVersion: TLS_DEFAULTS.minVersion });
  } catch {
    throw new P2pzError('E_TLS_UNREADABLE', 'OpenSSL refused the certificate and key together.');
  }
  return { cert, key, subjectAltName: x509.subjectAltName ?? '', validTo: new Date(x509.validTo), fingerprint256: x509.fingerprint256 };
}
