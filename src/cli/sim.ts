import { ShadowgateError } from "../core/errors.js";
import { ExitCodes } from "../core/errors.js";
import { ModbusTcpSimulator, resolveSimProfile, type RtuLinkOptions } from "../sim/modbus/index.js";

export interface SimModbusOptions {
  /** TCP port; default 5020, or no TCP when --rtu is given without it. */
  port?: string;
  host: string;
  profile?: string;
  rtu?: string;
  baud?: string;
  parity?: string;
  dataBits?: string;
  stopBits?: string;
}

const DEFAULT_PORT = "5020";

/** A bad flag: its one-line message. */
class UsageError extends Error {}

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) throw new UsageError(`--port ${text} is not a TCP port`);
  return port;
}

function parseRtu(o: SimModbusOptions): RtuLinkOptions | undefined {
  if (o.rtu === undefined) {
    const lineFlag = (
      [
        ["--baud", o.baud],
        ["--parity", o.parity],
        ["--data-bits", o.dataBits],
        ["--stop-bits", o.stopBits],
      ] as const
    ).find(([, v]) => v !== undefined);
    if (lineFlag) throw new UsageError(`${lineFlag[0]} applies to a serial line: add --rtu PATH`);
    return undefined;
  }
  if (o.rtu === "") throw new UsageError("--rtu needs the path of a serial device");
  const pick = <T extends string>(flag: string, text: string, allowed: readonly T[]): T => {
    const found = allowed.find((a) => a === text);
    if (found === undefined) {
      throw new UsageError(`${flag} ${text} is not one of ${allowed.join(", ")}`);
    }
    return found;
  };
  let baud: number | undefined;
  if (o.baud !== undefined) {
    baud = Number(o.baud);
    if (!/^\d+$/.test(o.baud) || baud < 1) {
      throw new UsageError(`--baud ${o.baud} is not a baud rate (a whole number of bits/s)`);
    }
  }
  return {
    path: o.rtu,
    ...(baud !== undefined && { baud }),
    ...(o.parity !== undefined && {
      parity: pick("--parity", o.parity, ["none", "even", "odd"] as const),
    }),
    ...(o.dataBits !== undefined && {
      dataBits: Number(pick("--data-bits", o.dataBits, ["7", "8"] as const)) as 7 | 8,
    }),
    ...(o.stopBits !== undefined && {
      stopBits: Number(pick("--stop-bits", o.stopBits, ["1", "2"] as const)) as 1 | 2,
    }),
  };
}

/** "19200 baud 8N1", or how an unpaced line is described. */
function describeLine(rtu: RtuLinkOptions): string {
  const frame = `${rtu.dataBits ?? 8}${(rtu.parity ?? "none")[0]!.toUpperCase()}${rtu.stopBits ?? 1}`;
  return rtu.baud === undefined ? `${frame}, answers not paced` : `${rtu.baud} baud ${frame}`;
}

export async function simModbusCommand(o: SimModbusOptions): Promise<number | undefined> {
  let port: number | undefined;
  let rtu: RtuLinkOptions | undefined;
  try {
    rtu = parseRtu(o);
    const portText = o.port ?? (rtu ? undefined : DEFAULT_PORT);
    port = portText === undefined ? undefined : parsePort(portText);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`${e.message}\n`);
    return ExitCodes.USAGE;
  }
  let sim: ModbusTcpSimulator;
  let tcpPort: number | undefined;
  try {
    // Profile errors surface before any socket or port is opened.
    sim = new ModbusTcpSimulator({ profile: await resolveSimProfile(o.profile) });
  } catch (e) {
    if (!(e instanceof ShadowgateError)) throw e;
    process.stderr.write(`${e.message}\n`);
    return e.code.startsWith("SG_CONFIG") ? ExitCodes.CONFIG : ExitCodes.RUNTIME;
  }
  try {
    if (port !== undefined) tcpPort = (await sim.start({ host: o.host, port })).port;
    if (rtu !== undefined) await sim.startRtu(rtu);
  } catch (e) {
    await sim.stop();
    // A port in use, a serial device that is missing, busy or not ours: a runtime failure.
    process.stderr.write(`cannot start the simulator: ${(e as Error).message}\n`);
    return ExitCodes.RUNTIME;
  }
  const tcp = tcpPort === undefined ? undefined : `${o.host}:${tcpPort}`;
  const line = rtu && `${rtu.path} (${describeLine(rtu)}, units ${sim.unitIds().join(", ")})`;
  process.stdout.write(
    tcp && line
      ? `Modbus simulator listening on ${tcp} (TCP) and serving RTU on ${line}\n`
      : tcp
        ? `Modbus TCP simulator listening on ${tcp}\n`
        : `Modbus RTU simulator serving ${line}\n`,
  );
  const stop = (): void => {
    void sim.stop().then(() => process.exit(ExitCodes.OK));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return undefined;
}
