/**
 * The B4 site and what runs around it, shared by B4 (scale) and B12 (soak): 20 pymodbus Modbus
 * TCP servers x 5 unit ids of 100 float32 points in one Python process (pymodbus-site.py), the
 * local cloud shadow service as a process of its own, and the /proc and /metrics readings both
 * benchmarks take of the gateway. Every child process is tracked and killed on any exit.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { startMosquitto } from "../../../test/helpers/mosquitto.js";
import { freePort } from "../../../test/helpers/ports.js";
import { envInfo, median, pinCores, REPO_DIR, startWatchdog, type PinInfo } from "./common.js";

export const SERVERS = 20;
export const UNITS = 5;
export const POINTS = 100;
export const PK = "a1B4";
export const CLI_MAIN = join(REPO_DIR, "dist", "cli", "main.js");
const SITE_PY = join(REPO_DIR, "scripts", "bench", "lib", "pymodbus-site.py");
const FRESH_LIMIT_MS = 15_000;

export const plcName = (s: number) => `plc${String(s).padStart(2, "0")}`;
export const deviceName = (s: number, u: number) => `b4-s${String(s).padStart(2, "0")}-u${u}`;

/** A PLC of the site: server index s (0-based), unit id u. */
export interface Device {
  s: number;
  u: number;
}

/** Every device of the site. */
export function siteDevices(): Device[] {
  const all: Device[] = [];
  for (let s = 0; s < SERVERS; s++) for (let u = 1; u <= UNITS; u++) all.push({ s, u });
  return all;
}

/** What every site device maps: POINTS float32 readings p0.. at registers 0, 2, 4... */
export const sitePoints = (): Record<string, Record<string, unknown>> =>
  Object.fromEntries(
    Array.from({ length: POINTS }, (_, k) => [
      `p${k}`,
      { table: "holding", offset: 2 * k, type: "float32" },
    ]),
  );

/** One mapping file per device under `dir`/mappings, each of these points. */
export function writeSiteMappings(
  dir: string,
  devices: readonly Device[],
  points: Record<string, Record<string, unknown>>,
  pollInterval: string,
): void {
  for (const d of devices) {
    writeFileSync(
      join(dir, "mappings", `${deviceName(d.s, d.u)}.yaml`),
      JSON.stringify({
        version: 1,
        device: { productKey: PK, deviceName: deviceName(d.s, d.u) },
        source: plcName(d.s),
        unitId: d.u,
        pollInterval,
        points,
      }),
    );
  }
}

export { freePort };

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Every process this run started, killed on any exit (the watchdog's too). */
const children: Set<ChildProcess> = new Set();
export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}
export function killAll() {
  for (const c of children) c.kill("SIGKILL");
}
process.on("exit", killAll);

export async function stopChild(child: ChildProcess, limitMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  if (
    (await Promise.race([exited.then(() => "ok"), sleep(limitMs).then(() => "late")])) === "late"
  ) {
    child.kill("SIGKILL");
    await exited;
  }
}

/** A command pinned to the helper core when pinning is on. */
export function onHelperCore(pin: PinInfo, command: string, args: string[]) {
  if (pin.pinned && pin.helperCore !== undefined) {
    return { command: "taskset", args: ["-c", pin.helperCore, command, ...args] };
  }
  return { command, args };
}

export type Frozen = Record<string, number[]>;

export class Site {
  /** Servers back after a `restart` (their lines come whenever, so they are not answers). */
  restarted = 0;
  private readonly lines: string[] = [];
  private waiters: Array<(line: string) => void> = [];
  constructor(readonly child: ChildProcess) {
    const rl = createInterface({ input: child.stdout! });
    rl.on("line", (line) => {
      if (line.startsWith("restarted ")) {
        this.restarted++;
        return;
      }
      const w = this.waiters.shift();
      if (w) w(line);
      else this.lines.push(line);
    });
  }
  nextLine(limitMs: number, what: string): Promise<string> {
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`site: no ${what} from the site in ${limitMs} ms`)),
        limitMs,
      );
      this.waiters.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  }
  send(line: string) {
    this.child.stdin?.write(`${line}\n`);
  }
  async freeze(): Promise<Frozen> {
    this.send("freeze");
    const line = await this.nextLine(10_000, "frozen values");
    if (!line.startsWith("frozen ")) throw new Error(`site: site said ${line.slice(0, 80)}`);
    return JSON.parse(line.slice("frozen ".length)) as Frozen;
  }
}

export async function startSite(
  pin: PinInfo,
  logDir: string,
): Promise<{ site: Site; ports: number[] }> {
  const { command, args } = onHelperCore(pin, "python3", [
    SITE_PY,
    String(SERVERS),
    String(UNITS),
    String(POINTS),
  ]);
  const child = track(
    spawn(command, args, {
      env: { ...process.env, PYENV_VERSION: "system" },
      stdio: ["pipe", "pipe", "pipe"],
    }),
  );
  child.stderr?.pipe(createWriteStream(join(logDir, "site.log")));
  const site = new Site(child);
  const line = await site.nextLine(60_000, "ready line");
  if (!line.startsWith("ready ")) throw new Error(`site: site said ${line}`);
  const ports = line.slice("ready ".length).split(",").map(Number);
  if (ports.length !== SERVERS) throw new Error(`site: ${ports.length} site ports`);
  return { site, ports };
}

export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After "pid (comm) ": state is field 3, utime 14, stime 15.
  return Number(fields[11]) + Number(fields[12]);
}

export function statusKb(pid: number, key: "VmRSS" | "VmHWM"): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(
    readFileSync(`/proc/${pid}/status`, "utf8"),
  );
  return m ? Number(m[1]) : NaN;
}

export async function scrape(apiPort: number): Promise<Record<string, number>> {
  const res = await fetch(`http://127.0.0.1:${apiPort}/metrics`);
  const text = await res.text();
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = /^(shadowgate_[a-z0-9_]+) ([0-9.eE+-]+|NaN)$/.exec(line);
    if (m?.[1] !== undefined) out[m[1]] = Number(m[2]);
  }
  return out;
}

export async function startCloud(
  pin: PinInfo,
  brokerUrl: string,
  logDir: string,
): Promise<{ url: string; child: ChildProcess }> {
  const httpPort = await freePort();
  const { command, args } = onHelperCore(pin, process.execPath, [
    CLI_MAIN,
    "cloud",
    "--broker",
    brokerUrl,
    "--mqtt-port",
    "0",
    "--http-port",
    String(httpPort),
  ]);
  const child = track(spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] }));
  child.stderr?.pipe(createWriteStream(join(logDir, "cloud.log")));
  const url = `http://127.0.0.1:${httpPort}`;
  const end = Date.now() + 30_000;
  for (;;) {
    const ok = await fetch(`${url}/healthz`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) return { url, child };
    if (Date.now() > end || child.exitCode !== null)
      throw new Error("the cloud service did not start");
    await sleep(100);
  }
}

/** One section of a device's shadow in the cloud service; undefined when it has no shadow. */
export async function cloudState(
  cloudUrl: string,
  dn: string,
  section: "reported" | "desired" = "reported",
): Promise<Record<string, unknown> | undefined> {
  const res = await fetch(`${cloudUrl}/shadows/${PK}/${dn}?format=json`);
  if (!res.ok) return undefined;
  const doc = (await res.json()) as { state?: Record<string, Record<string, unknown>> };
  return doc.state?.[section];
}

/** Every point equal at float32 precision. */
export function equalsPlc(
  reported: Record<string, unknown> | undefined,
  values: number[],
): boolean {
  if (reported === undefined) return false;
  return values.every((v, k) => {
    const r = reported[`p${k}`];
    return typeof r === "number" && Math.fround(r) === Math.fround(v);
  });
}

/** Time from `frozenAt` (performance.now()) until every device's cloud shadow equals its PLC's frozen values. */
export async function freshness(
  cloudUrl: string,
  devices: Device[],
  frozen: Frozen,
  frozenAt: number,
) {
  const pending = new Set(devices);
  const at: number[] = [];
  const end = frozenAt + FRESH_LIMIT_MS;
  while (pending.size > 0 && performance.now() < end) {
    await Promise.all(
      [...pending].map(async (d) => {
        const values = frozen[`${d.s}.${d.u}`] ?? [];
        const reported = await cloudState(cloudUrl, deviceName(d.s, d.u)).catch(() => undefined);
        if (equalsPlc(reported, values)) {
          at.push(performance.now() - frozenAt);
          pending.delete(d);
        }
      }),
    );
    if (pending.size > 0) await sleep(50);
  }
  // For a stale device, its first point that differs: what the cloud holds against the PLC.
  let mismatch: string | undefined = undefined;
  const first = [...pending][0];
  if (first !== undefined) {
    const values = frozen[`${first.s}.${first.u}`] ?? [];
    const reported = await cloudState(cloudUrl, deviceName(first.s, first.u)).catch(
      () => undefined,
    );
    const k = values.findIndex(
      (v, i) => Math.fround(Number(reported?.[`p${i}`])) !== Math.fround(v),
    );
    mismatch = `${deviceName(first.s, first.u)}.p${k}: cloud ${JSON.stringify(reported?.[`p${k}`])}, PLC ${values[k]}`;
  }
  return {
    mismatch,
    allMs: pending.size === 0 ? Math.max(...at) : NaN,
    medianMs: median(at),
    stale: [...pending].map((d) => deviceName(d.s, d.u)),
  };
}

/** What a benchmark on the site gets from onSite. */
export interface SiteRun {
  readonly pin: PinInfo;
  /** Where the children's logs go (kept when a target is missed). */
  readonly logDir: string;
  readonly site: Site;
  readonly ports: number[];
  readonly mqttUrl: string;
  readonly cloudUrl: string;
  /** Run when the benchmark ends, the last added first. */
  readonly cleanup: Array<() => Promise<unknown>>;
}

/**
 * A benchmark on the site (B4, B12): pins the cores when they are free, starts mosquitto, the
 * pymodbus site and the cloud service, runs `body`, and stops everything whatever happens. The
 * logs are kept when `body` says a target was missed (false) or throws; after `budgetMs` a
 * watchdog kills every child and exits 2. `intro` is printed first, with the pinning and load.
 */
export async function onSite(
  name: string,
  budgetMs: number,
  intro: string,
  body: (run: SiteRun) => Promise<boolean>,
): Promise<void> {
  const pin = pinCores();
  const logDir = mkdtempSync(join(tmpdir(), `${name}-logs-`));
  const watchdog = startWatchdog(name, budgetMs, killAll);
  const cleanup: Array<() => Promise<unknown>> = [];
  let keepLogs = true;
  console.log(`  ${intro}; pinning: ${pin.reason}; load ${envInfo([], pin).loadavg.join(" ")}`);
  try {
    const mosquitto = await startMosquitto();
    cleanup.push(() => mosquitto.stop());
    const { site, ports } = await startSite(pin, logDir);
    cleanup.push(async () => {
      site.child.stdin?.end();
      await stopChild(site.child, 5000);
    });
    const cloud = await startCloud(pin, mosquitto.url, logDir);
    cleanup.push(() => stopChild(cloud.child, 5000));
    const run = { pin, logDir, site, ports, mqttUrl: mosquitto.url, cloudUrl: cloud.url, cleanup };
    keepLogs = !(await body(run));
  } finally {
    clearTimeout(watchdog);
    for (const fn of cleanup.reverse()) await fn().catch(() => undefined);
    killAll();
    if (keepLogs) console.log(`  logs kept in ${logDir}`);
    else rmSync(logDir, { recursive: true, force: true });
  }
}
