import { format } from "node:util";
import { ExitCodes, ShadowgateError } from "../core/errors.js";
import { resolveOpcuaProfile, type OpcuaSimProfile } from "../sim/opcua/profile.js";
import { SECURE_POLICY, startOpcuaSimulator, type OpcuaSimulator } from "../sim/opcua/simulator.js";

/** `shadowgate sim opcua` flags, as commander hands them over. */
export interface SimOpcuaOptions {
  port?: string;
  host: string;
  profile?: string;
  extraVariables?: string;
  pki?: string;
}

/** The IANA port of OPC UA TCP. */
const DEFAULT_PORT = "4840";

/** A bad flag: its one-line message. */
class UsageError extends Error {}

function wholeNumber(flag: string, text: string, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > max)
    throw new UsageError(`${flag} ${text} is not a whole number up to ${max}`);
  return n;
}

/** node-opcua logs to stdout; the simulator's stdout is its one line, so its logs go to stderr. */
async function routeNodeOpcuaLogs(): Promise<void> {
  const { setErrorLogger, setWarningLogger } = await import("node-opcua");
  // The first argument is node-opcua's caller context ({ filename, callerline }).
  const toStderr = (_context?: unknown, ...args: unknown[]): void => {
    process.stderr.write(`node-opcua: ${format(...args)}\n`);
  };
  setWarningLogger(toStderr);
  setErrorLogger(toStderr);
}

export async function simOpcuaCommand(o: SimOpcuaOptions): Promise<number | undefined> {
  let port: number;
  let extraVariables: number;
  try {
    port = wholeNumber("--port", o.port ?? DEFAULT_PORT, 65535);
    extraVariables = wholeNumber("--extra-variables", o.extraVariables ?? "0", 1_000_000);
    if (o.host === "") throw new UsageError("--host needs an address");
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`${e.message}\n`);
    return ExitCodes.USAGE;
  }
  let profile: OpcuaSimProfile;
  try {
    // Profile errors surface before node-opcua is loaded or any port is opened.
    profile = await resolveOpcuaProfile(o.profile);
  } catch (e) {
    if (!(e instanceof ShadowgateError)) throw e;
    process.stderr.write(`${e.message}\n`);
    return e.code.startsWith("SG_CONFIG") ? ExitCodes.CONFIG : ExitCodes.RUNTIME;
  }
  let sim: OpcuaSimulator;
  try {
    await routeNodeOpcuaLogs();
    sim = await startOpcuaSimulator({
      port,
      host: o.host,
      profile,
      extraVariables,
      ...(o.pki !== undefined && { pkiDir: o.pki }),
    });
  } catch (e) {
    // A port in use, an address that is not ours, a PKI folder we cannot write.
    process.stderr.write(`cannot start the OPC UA simulator: ${(e as Error).message}\n`);
    return ExitCodes.RUNTIME;
  }
  const modes = sim.securityModes.map((m) => (m === "None" ? m : `${m} ${SECURE_POLICY}`));
  const count = sim.names().length;
  process.stdout.write(
    `OPC UA simulator listening on ${sim.endpoint} (security: ${modes.join(", ")}; ${count} variables)\n`,
  );
  const stop = (): void => {
    sim.close().then(
      () => process.exit(ExitCodes.OK),
      (e: unknown) => {
        process.stderr.write(`closing the OPC UA simulator: ${(e as Error).message}\n`);
        process.exit(ExitCodes.RUNTIME);
      },
    );
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return undefined;
}
