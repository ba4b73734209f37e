import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { ExitCodes } from "../core/errors.js";
import { MbapClient } from "../south/modbus/mbap-client.js";
import type { LinkEvents, ModbusLink } from "../south/modbus/modbus-link.js";
import { RtuClient } from "../south/modbus/rtu-client.js";
import { draftMapping, scanUnits } from "../south/modbus/scan.js";

export interface ScanCommandOptions {
  host?: string;
  port: string;
  rtu?: string;
  baud?: string;
  parity: string;
  stopBits: string;
  units: string;
  registers: string;
  timeout: string;
  maxRequests: string;
  source: string;
  out?: string;
  json?: boolean;
}

/** "1-5,9" -> [1, 2, 3, 4, 5, 9] within [lo, hi]; undefined when it is not such a list. */
export function parseRanges(text: string, lo: number, hi: number): number[] | undefined {
  const out = new Set<number>();
  for (const part of text.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) return undefined;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (a < lo || b > hi || a > b) return undefined;
    for (let k = a; k <= b; k++) out.add(k);
  }
  return [...out].sort((x, y) => x - y);
}

function usage(message: string): number {
  process.stderr.write(`${message}\n`);
  return ExitCodes.USAGE;
}

/**
 * `shadowgate scan`: which units answer on a Modbus TCP address or an RTU line, which of their
 * holding and input registers read, and a draft mapping file per unit (south/modbus/scan.ts).
 */
/** How often a scan that finds nothing says it is still going, when stderr is not a terminal. */
const PROGRESS_EVERY_MS = 5000;

export async function scanCommand(o: ScanCommandOptions): Promise<number> {
  if ((o.host === undefined) === (o.rtu === undefined))
    return usage("name the device: --host H [--port 502], or --rtu PATH --baud B");
  const units = parseRanges(o.units, 0, 247);
  if (!units) return usage(`--units ${o.units}: unit ids 0-247, as 1-247 or 1,3,5-9`);
  const registers = parseRanges(o.registers, 0, 65535);
  const [from, to] = [registers?.[0], registers?.[registers.length - 1]];
  if (from === undefined || to === undefined || !/^\s*\d+\s*-\s*\d+\s*$/.test(o.registers))
    return usage(`--registers ${o.registers}: a range of addresses such as 0-9999`);
  const port = Number(o.port);
  const timeoutMs = Number(o.timeout);
  const maxRequests = Number(o.maxRequests);
  const baud = Number(o.baud ?? 9600);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return usage(`--port ${o.port}`);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 10) return usage(`--timeout ${o.timeout}: ms`);
  if (!Number.isInteger(maxRequests) || maxRequests < 10)
    return usage(`--max-requests ${o.maxRequests}: at least 10`);
  if (!["none", "even", "odd"].includes(o.parity)) return usage(`--parity ${o.parity}`);
  if (o.stopBits !== "1" && o.stopBits !== "2") return usage(`--stop-bits ${o.stopBits}`);
  if (o.rtu !== undefined && (!Number.isInteger(baud) || baud < 300))
    return usage(`--baud ${o.baud ?? ""}`);

  const where = o.host !== undefined ? `${o.host}:${port}` : `${o.rtu ?? ""} at ${baud} baud`;
  const events: LinkEvents = { badFrame: () => undefined, closed: () => undefined };
  const open = (): Promise<ModbusLink> =>
    o.host !== undefined
      ? MbapClient.connect({ host: o.host, port, timeoutMs }, events)
      : RtuClient.open(
          {
            kind: "rtu",
            path: o.rtu ?? "",
            line: {
              baud,
              dataBits: 8,
              parity: o.parity as "none" | "even" | "odd",
              stopBits: o.stopBits === "2" ? 2 : 1,
            },
          },
          { timeoutMs, turnaroundMs: 0 },
          events,
        );

  const tty = process.stderr.isTTY;
  const started = Date.now();
  let lastLine = started;
  let scans;
  try {
    scans = await scanUnits(open, {
      units,
      from,
      to,
      maxRequestsPerUnit: maxRequests,
      // A terminal gets one line, redrawn. A log (systemd, CI, a pipe) gets a line for each
      // table of a unit that answers, and one every PROGRESS_EVERY_MS through silent units.
      progress: (what) => {
        if (tty) return void process.stderr.write(`\r\x1b[Kscanning ${where}: ${what}`);
        const now = Date.now();
        if (!what.includes("registers") && now - lastLine < PROGRESS_EVERY_MS) return;
        lastLine = now;
        process.stderr.write(
          `scanning ${where}: ${what} (${((now - started) / 1000).toFixed(1)} s)\n`,
        );
      },
    });
  } catch (err) {
    if (tty) process.stderr.write("\n");
    const why = err instanceof Error ? err.message : String(err);
    process.stderr.write(`scan of ${where} stopped: ${why}\n`);
    return ExitCodes.RUNTIME;
  }
  if (tty) process.stderr.write("\r\x1b[K");
  if (scans.length === 0) {
    process.stderr.write(
      `no unit answered on ${where} (units ${o.units}, ${timeoutMs} ms each, ${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
    );
    return ExitCodes.RUNTIME;
  }
  for (const s of scans) {
    if (s.incomplete)
      process.stderr.write(
        `unit ${s.unitId}: stopped after ${s.requests} requests (--max-requests); the ranges found are listed\n`,
      );
  }
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ target: where, units: scans }, null, 2)}\n`);
    return ExitCodes.OK;
  }
  const at = new Date().toISOString();
  const drafts = scans.map((s) => ({
    unitId: s.unitId,
    text: draftMapping(s, o.source, [
      `Draft from \`shadowgate scan\` of ${where}, unit ${s.unitId}, ${at}`,
    ]),
  }));
  if (o.out !== undefined) {
    await mkdir(o.out, { recursive: true });
    for (const d of drafts) {
      const file = path.join(o.out, `unit-${d.unitId}.yaml`);
      await writeFile(file, d.text);
      process.stdout.write(`wrote ${file}\n`);
    }
    return ExitCodes.OK;
  }
  process.stdout.write(drafts.map((d) => d.text).join("---\n"));
  return ExitCodes.OK;
}
