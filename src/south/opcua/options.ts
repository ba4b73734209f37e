/** What an OPC UA source is configured with, as the driver takes it (src/south/opcua/index.ts). */

export type OpcuaSecurityMode = "None" | "Sign" | "SignAndEncrypt";
export type OpcuaSecurityPolicy =
  "None" | "Basic256Sha256" | "Aes128_Sha256_RsaOaep" | "Aes256_Sha256_RsaPss";

/** Who the session runs as. Certificate files are absolute paths here. */
export type OpcuaIdentity =
  | { readonly type: "anonymous" }
  | { readonly type: "username"; readonly username: string; readonly password: string }
  | { readonly type: "certificate"; readonly certificate: string; readonly privateKey: string };

export interface OpcuaDriverOptions {
  readonly endpoint: string;
  readonly securityMode: OpcuaSecurityMode;
  /** Default: Basic256Sha256 with Sign or SignAndEncrypt, None with None. */
  readonly securityPolicy?: OpcuaSecurityPolicy;
  readonly identity: OpcuaIdentity;
  /** How long one service call may take. */
  readonly timeoutMs: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  /**
   * The client's PKI (own certificate, trusted/, rejected/): the gateway passes
   * `<dataDir>/pki/opcua`. Unknown server certificates land in `rejected/` and are refused.
   */
  readonly pkiDir: string;
  /** ApplicationName in the client certificate and the session. Default "Shadowgate". */
  readonly applicationName?: string;
}
