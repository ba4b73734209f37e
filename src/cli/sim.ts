import { ShadowgateError } from "../core/errors.js";
import { ExitCodes } from "../core/errors.js";
import { startSimulator } from "../sim/modbus/index.js";

export async function simModbusCommand(o: {
  port: string;
  host: string;
  profile?: string;
}): Promise<number | undefined> {
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`--port ${o.port} is not a TCP port\n`);
    return ExitCodes.USAGE;
  }
  let running;
  try {
    running = await startSimulator({
      port,
      host: o.host,
      ...(o.profile !== undefined && { profile: o.profile }),
    });
  } catch (e) {
    if (e instanceof ShadowgateError) {
      process.stderr.write(`${e.message}\n`);
      return e.code.startsWith("SG_CONFIG") ? ExitCodes.CONFIG : ExitCodes.RUNTIME;
    }
    throw e;
  }
  process.stdout.write(`Modbus TCP simulator listening on ${o.host}:${running.port}\n`);
  const stop = (): void => {
    void running.close().then(() => process.exit(ExitCodes.OK));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return undefined;
}
