/**
 * The client PKI lives in `pkiDir`. A server certificate that is not trusted is refused
 * (automaticallyAcceptUnknownCertificate false): node-opcua saves it in `<pkiDir>/rejected/`, and
 * the driver logs an error, and puts in every sample's reason and in health().lastError, the
 * file's exact path and the `mv` that trusts it. The trust list is re-read before every attempt,
 * so moving the file is enough: the next attempt connects.
 */
import { OPCUACertificateManager, type StatusCode } from "node-opcua";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { OpcuaDriverOptions } from "./options.js";
import type { Down } from "./session.js";
import {
  describeCertificate,
  findRejectedFile,
  rejectedDir,
  trustCommand,
  trustedCertsDir,
} from "./trust.js";
import { statusName } from "./values.js";

/** The source's certificate store, and why a connection attempt was refused. */
export class ClientPki {
  private certificates: OPCUACertificateManager | undefined;
  /** The server certificate the last check refused, and why. */
  private refusedCertificate: { chain: Buffer; status: StatusCode } | undefined;
  private readonly loggedRefusals = new Set<string>();

  constructor(
    private readonly sourceId: string,
    private readonly opts: OpcuaDriverOptions,
    private readonly log: Logger,
  ) {}

  /** The store for a new attempt, its trust list re-read; the last refusal is forgotten. */
  async forAttempt(): Promise<OPCUACertificateManager> {
    const cm = await this.certificateManager();
    this.refusedCertificate = undefined;
    return cm;
  }

  /** Releases the store (the source is stopping); the next attempt opens it again. */
  async dispose(): Promise<void> {
    const cm = this.certificates;
    this.certificates = undefined;
    if (cm) {
      cm.referenceCounter = 0;
      await cm.dispose().catch(() => undefined);
    }
  }

  private async certificateManager(): Promise<OPCUACertificateManager> {
    let cm = this.certificates;
    if (!cm) {
      cm = new OPCUACertificateManager({
        rootFolder: this.opts.pkiDir,
        automaticallyAcceptUnknownCertificate: false,
        // The trust list is re-read before every attempt instead (no watchers to leak).
        disableFileWatchers: true,
      });
      await cm.initialize();
      // Every client holds a reference and its disconnect() releases it; the driver's own one
      // keeps the store open between clients (released in stop()).
      cm.referenceCounter++;
      // Remember what the check refused, to tell the operator which file to trust.
      const check = cm.checkCertificate.bind(cm) as (c: Buffer | Buffer[]) => Promise<StatusCode>;
      (cm as unknown as { checkCertificate: typeof check }).checkCertificate = async (chain) => {
        const status = await check(chain);
        if (status.value !== 0) {
          const der = Array.isArray(chain) ? Buffer.concat(chain) : chain;
          this.refusedCertificate = { chain: der, status };
        }
        return status;
      };
      this.certificates = cm;
    } else if (this.opts.securityMode !== "None") {
      await cm.reloadCertificates();
    }
    return cm;
  }

  /** Why a connection attempt failed; for an untrusted server certificate, how to trust it. */
  async connectFailure(err: unknown): Promise<Down> {
    if (err instanceof ShadowgateError)
      return this.logged({ code: err.code, message: err.message });
    const message = ((err as Error).message ?? String(err)).split("\n")[0] ?? "";
    const refused = this.refusedCertificate;
    if (refused) {
      const status = statusName(refused.status);
      const file = await findRejectedFile(this.opts.pkiDir, refused.chain);
      const cert = describeCertificate(refused.chain);
      const server = `the server certificate of ${this.opts.endpoint}`;
      const text =
        status !== "BadCertificateUntrusted"
          ? `${server} was refused (${status})` + (file ? `; it was saved as ${file}` : "")
          : file
            ? `${server} is not trusted (${status}); it was saved as ${file}. ` +
              `To trust it, run: ${trustCommand(this.opts.pkiDir, file)}`
            : `${server} is not trusted (${status}); put it in ` +
              `${trustedCertsDir(this.opts.pkiDir)}/ (refused certificates go to ` +
              `${rejectedDir(this.opts.pkiDir)}/)`;
      if (!this.loggedRefusals.has(cert.thumbprint + status)) {
        this.loggedRefusals.add(cert.thumbprint + status);
        this.log.error(
          {
            source: this.sourceId,
            endpoint: this.opts.endpoint,
            code: ErrorCodes.OPCUA_UNTRUSTED,
            status,
            certificate: cert,
            ...(file && { rejectedFile: file, trustWith: trustCommand(this.opts.pkiDir, file) }),
          },
          text,
        );
      }
      return { code: ErrorCodes.OPCUA_UNTRUSTED, message: text };
    }
    if (/rejected by server|BadSecurityChecksFailed|BadCertificate/i.test(message)) {
      const own = `${this.opts.pkiDir}/own/certs/client_certificate.pem`;
      return this.logged({
        code: ErrorCodes.OPCUA_UNTRUSTED,
        message:
          `${this.opts.endpoint} refused the connection (${message}); the server may not trust ` +
          `the gateway's certificate ${own}: add it to the server's trusted certificates`,
      });
    }
    return { code: ErrorCodes.OPCUA_DISCONNECTED, message: `connect failed: ${message}` };
  }

  /** Logs a refusal once per distinct message (attempts repeat it every backoff). */
  private logged(down: Down): Down {
    const key = `${down.code}|${down.message}`;
    if (!this.loggedRefusals.has(key)) {
      this.loggedRefusals.add(key);
      this.log.error(
        { source: this.sourceId, endpoint: this.opts.endpoint, code: down.code },
        down.message,
      );
    }
    return down;
  }
}
