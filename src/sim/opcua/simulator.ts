import { EventEmitter } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
// Types only: node-opcua takes about a second to load, so it is imported when a simulator
// starts (startOpcuaSimulator), never by the modules that merely name it.
import type * as UA from "node-opcua";
import { ProfileDynamics } from "./dynamics.js";
import {
  resolveOpcuaProfile,
  type OpcuaProfileInput,
  type OpcuaSimProfile,
  type OpcuaVariableDef,
} from "./profile.js";
import {
  isWildcard,
  type NodeOpcua,
  type OpcuaSecurityMode,
  startServer,
  toDataValue,
  type VariableAccess,
} from "./server.js";
import { coerceValue, copyValue, sameValue, type OpcuaSimValue } from "./values.js";

export { SECURE_POLICY, type OpcuaSecurityMode } from "./server.js";

export interface OpcuaSimulatorOptions {
  /** TCP port; 0 (default) picks a free one. */
  readonly port?: number;
  /** Address to bind and to name in the endpoint URL (default 127.0.0.1). */
  readonly host?: string;
  /** A YAML file, a profile object (raw or compiled); default: the boiler. */
  readonly profile?: string | OpcuaProfileInput | OpcuaSimProfile;
  /**
   * Security modes offered; every secure one uses Basic256Sha256.
   * Default: None and SignAndEncrypt. `["SignAndEncrypt"]` refuses unsecured clients.
   */
  readonly securityModes?: readonly OpcuaSecurityMode[];
  /**
   * The PKI root: `server/` holds the server's certificate store (own/, trusted/, rejected/),
   * `user/` the one for X.509 user tokens. Default: a temp folder, removed by close(). Unknown
   * client certificates are accepted: tests decide trust on the client side.
   */
  readonly pkiDir?: string;
  /** Username identities: { username: password }. */
  readonly users?: Readonly<Record<string, string>>;
  /** Anonymous sessions (default true). */
  readonly allowAnonymous?: boolean;
  /** Adds Objects/Bench with N read-only Doubles ns=1;s=Bench.V<i> (value i), for benchmarks. */
  readonly extraVariables?: number;
  /** Every dynamics tick also runs tickExtraVariables() (default false). */
  readonly animateExtraVariables?: boolean;
  /** Dynamics period in ms; default: the profile's `tick` (100 ms). */
  readonly tickMs?: number;
  /** Start the dynamics timer (default true); step() and startDynamics() work either way. */
  readonly dynamics?: boolean;
}

/** One client write to a writable variable. */
export interface OpcuaWrite {
  /** `Object.Name`, as get() and set() take it. */
  readonly name: string;
  readonly nodeId: string;
  readonly value: OpcuaSimValue;
  readonly time: Date;
}

export interface OpcuaSimulatorEvents {
  write: [write: OpcuaWrite];
}

interface Entry {
  readonly def: OpcuaVariableDef;
  value: OpcuaSimValue;
  dataValue: UA.DataValue;
}

/** The write log keeps the most recent writes only, so a long run does not grow without end. */
const WRITE_LOG_LIMIT = 10_000;
const BENCH_OBJECT = "Bench";

const MODE_NAMES: readonly OpcuaSecurityMode[] = ["None", "Sign", "SignAndEncrypt"];

/**
 * An OPC UA server for tests, benchmarks and the demo (node-opcua). The values live here, not
 * in node-opcua's address space: each variable is bound to them, so they survive restart() and
 * every client write passes through one setter that records it.
 */
export class OpcuaSimulator extends EventEmitter<OpcuaSimulatorEvents> {
  readonly profile: OpcuaSimProfile;
  readonly host: string;
  readonly securityModes: readonly OpcuaSecurityMode[];
  readonly pkiDir: string;
  /** The last error a dynamics tick threw (a timer has nowhere else to put it). */
  lastError: unknown;

  private readonly ua: NodeOpcua;
  private readonly entries = new Map<string, Entry>();
  /** Bare variable names that are unique across objects, to their keys. */
  private readonly aliases = new Map<string, string | null>();
  private readonly extraKeys: string[] = [];
  private readonly dynamicsRuntime: ProfileDynamics;
  private readonly writeLog: OpcuaWrite[] = [];
  private readonly ownsPki: boolean;
  private readonly opts: OpcuaSimulatorOptions;
  private readonly tickMs: number;
  private timer: NodeJS.Timeout | undefined;
  private current: UA.OPCUAServer | undefined;
  private boundPort = 0;
  private extraTicks = 0;
  private closed = false;

  /** Use startOpcuaSimulator(). */
  constructor(
    ua: NodeOpcua,
    profile: OpcuaSimProfile,
    pki: { dir: string; owned: boolean },
    opts: OpcuaSimulatorOptions,
  ) {
    super();
    this.ua = ua;
    this.profile = profile;
    this.opts = opts;
    this.host = opts.host ?? "127.0.0.1";
    this.pkiDir = pki.dir;
    this.ownsPki = pki.owned;
    this.tickMs = opts.tickMs ?? profile.tickMs;
    const modes = opts.securityModes ?? ["None", "SignAndEncrypt"];
    const unknown = modes.find((m) => !MODE_NAMES.includes(m));
    if (modes.length === 0 || unknown !== undefined) {
      throw new RangeError(`securityModes: give one or more of ${MODE_NAMES.join(", ")}`);
    }
    this.securityModes = [...new Set(modes)];
    if (!(this.tickMs > 0)) {
      throw new RangeError(`tickMs must be longer than 0, got ${this.tickMs}`);
    }

    const now = new Date();
    for (const o of profile.objects) {
      for (const def of o.variables) {
        this.entries.set(def.key, {
          def,
          value: def.initial,
          dataValue: this.dataValue(def, def.initial, now),
        });
        this.aliases.set(def.name, this.aliases.has(def.name) ? null : def.key);
      }
    }
    const extra = opts.extraVariables ?? 0;
    if (!Number.isInteger(extra) || extra < 0) {
      throw new RangeError(`extraVariables must be a whole number, got ${extra}`);
    }
    if (extra > 0 && profile.objects.some((o) => o.name === BENCH_OBJECT)) {
      throw new RangeError(
        `extraVariables: the profile already has an object named ${BENCH_OBJECT}`,
      );
    }
    for (let i = 0; i < extra; i++) {
      const def: OpcuaVariableDef = {
        key: `${BENCH_OBJECT}.V${i}`,
        object: BENCH_OBJECT,
        name: `V${i}`,
        nodeId: `ns=1;s=${BENCH_OBJECT}.V${i}`,
        dataType: "Double",
        array: false,
        initial: i,
        writable: false,
        minimumSamplingIntervalMs: profile.minimumSamplingIntervalMs,
      };
      this.entries.set(def.key, { def, value: i, dataValue: this.dataValue(def, i, now) });
      this.extraKeys.push(def.key);
    }
    this.dynamicsRuntime = new ProfileDynamics(profile, {
      get: (key) => this.entry(key).value,
      set: (key, value) => this.update(this.entry(key), value),
    });
  }

  /** The running node-opcua server (a new one after each restart()). */
  get server(): UA.OPCUAServer {
    if (!this.current) throw new Error("the OPC UA simulator is not running");
    return this.current;
  }

  get port(): number {
    return this.boundPort;
  }

  /** opc.tcp://host:port */
  get endpoint(): string {
    const host = isWildcard(this.host) ? "127.0.0.1" : this.host;
    return `opc.tcp://${host.includes(":") ? `[${host}]` : host}:${this.boundPort}`;
  }

  /** The most recent client writes (up to 10,000), oldest first. */
  get writes(): readonly OpcuaWrite[] {
    return this.writeLog;
  }

  /** Every variable's key (`Boiler.Temperature`), extra variables last. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  /** A variable's definition, by key or by a bare name unique across objects. */
  variable(name: string): OpcuaVariableDef {
    return this.entry(name).def;
  }

  get(name: string): OpcuaSimValue {
    return copyValue(this.entry(name).value);
  }

  /**
   * Sets a value as the device would (no write event). Throws a RangeError for an unknown name
   * and a ShadowgateError (SG_CODEC_*) for a value the type cannot hold.
   */
  set(name: string, value: OpcuaSimValue): void {
    const e = this.entry(name);
    this.update(e, coerceValue(e.def, value));
  }

  /** Sets several values at once: all are checked before any is set. */
  setMany(
    values: Readonly<Record<string, OpcuaSimValue>> | Iterable<readonly [string, OpcuaSimValue]>,
  ): void {
    const pairs: Iterable<readonly [string, OpcuaSimValue]> =
      Symbol.iterator in values ? values : Object.entries(values);
    const checked: Array<[Entry, OpcuaSimValue]> = [];
    for (const [name, value] of pairs) {
      const e = this.entry(name);
      checked.push([e, coerceValue(e.def, value)]);
    }
    const now = new Date();
    for (const [e, v] of checked) this.update(e, v, now);
  }

  /** Adds 1 to every extra variable (Bench.V<i> = i + ticks so far). */
  tickExtraVariables(): void {
    this.extraTicks += 1;
    const now = new Date();
    this.extraKeys.forEach((key, i) => this.update(this.entry(key), i + this.extraTicks, now));
  }

  /** One tick of the profile's dynamics (and of the extra variables when animated). */
  step(): void {
    this.dynamicsRuntime.step();
    if (this.opts.animateExtraVariables) this.tickExtraVariables();
  }

  get dynamicsRunning(): boolean {
    return this.timer !== undefined;
  }

  startDynamics(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => {
      try {
        this.step();
      } catch (err) {
        this.lastError = err;
      }
    }, this.tickMs);
    // The listening socket keeps a process alive; a timer alone must not.
    this.timer.unref();
  }

  /** Holds every value still (until startDynamics() or step()). */
  stopDynamics(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Stops the server and starts a new one on the same port with the same values. */
  async restart(): Promise<void> {
    await this.pause();
    await this.resume();
  }

  /**
   * Takes the server down (an outage: sessions drop, the port refuses) keeping every value;
   * values set meanwhile are served after resume().
   */
  async pause(): Promise<void> {
    if (this.closed) throw new Error("the OPC UA simulator is closed");
    await this.stopServer();
  }

  /** Serves again on the same port, with the same certificate and values. */
  async resume(): Promise<void> {
    if (this.closed) throw new Error("the OPC UA simulator is closed");
    if (!this.current) await this.startServer(this.boundPort);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopDynamics();
    try {
      await this.stopServer();
    } finally {
      if (this.ownsPki) await rm(this.pkiDir, { recursive: true, force: true });
    }
  }

  /** @internal startOpcuaSimulator() */
  async startServer(port: number): Promise<void> {
    const settings = {
      host: this.host,
      port,
      securityModes: this.securityModes,
      pkiDir: this.pkiDir,
      users: this.opts.users,
      allowAnonymous: this.opts.allowAnonymous ?? true,
    };
    const objects = [
      ...this.profile.objects,
      ...(this.extraKeys.length > 0
        ? [
            {
              name: BENCH_OBJECT,
              nodeId: `ns=1;s=${BENCH_OBJECT}`,
              variables: this.extraKeys.map((k) => this.entry(k).def),
            },
          ]
        : []),
    ];
    const server = await startServer(
      this.ua,
      settings,
      { objects, ...(this.profile.namespaces && { namespaces: this.profile.namespaces }) },
      (def) => this.access(def),
    );
    this.current = server;
    this.boundPort = server.endpoints[0]?.port ?? port;
  }

  private async stopServer(): Promise<void> {
    const server = this.current;
    this.current = undefined;
    if (server) await server.shutdown(0);
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name) ?? this.entries.get(this.aliases.get(name) ?? "");
    if (e) return e;
    if (this.aliases.get(name) === null) {
      const keys = this.profile.objects.flatMap((o) =>
        o.variables.filter((v) => v.name === name).map((v) => v.key),
      );
      throw new RangeError(`${name} is ambiguous: ${keys.join(", ")}`);
    }
    throw new RangeError(`the simulator has no variable ${name}`);
  }

  private update(e: Entry, value: OpcuaSimValue, time = new Date()): void {
    // An unchanged value keeps its source timestamp: it says when the value last changed.
    if (sameValue(e.value, value)) return;
    e.value = value;
    e.dataValue = this.dataValue(e.def, value, time);
  }

  private dataValue(def: OpcuaVariableDef, value: OpcuaSimValue, time: Date): UA.DataValue {
    return toDataValue(this.ua, def, value, time);
  }

  /** The variable as node-opcua serves it: every client write passes through here. */
  private access(def: OpcuaVariableDef): VariableAccess {
    const e = this.entry(def.key);
    return {
      get: () => e.dataValue,
      written: (value, sourceTimestamp) => {
        const time = new Date();
        e.value = value;
        // A client may stamp its write; node-opcua stamps it otherwise.
        e.dataValue = this.dataValue(def, value, sourceTimestamp ?? time);
        const write: OpcuaWrite = {
          name: def.key,
          nodeId: def.nodeId,
          value: copyValue(value),
          time,
        };
        if (this.writeLog.push(write) > WRITE_LOG_LIMIT) this.writeLog.shift();
        return () => this.emit("write", write);
      },
    };
  }
}

/**
 * Loads the profile, starts an OPC UA server with it (node-opcua is imported here) and its
 * dynamics. Profile errors throw a ShadowgateError (SG_CONFIG_*) before node-opcua is loaded
 * or any port is opened.
 */
export async function startOpcuaSimulator(
  opts: OpcuaSimulatorOptions = {},
): Promise<OpcuaSimulator> {
  const profile = await resolveOpcuaProfile(opts.profile);
  const ua: NodeOpcua = await import("node-opcua");
  const owned = opts.pkiDir === undefined;
  const dir = opts.pkiDir ?? (await mkdtemp(path.join(tmpdir(), "shadowgate-opcua-pki-")));
  let sim: OpcuaSimulator;
  try {
    sim = new OpcuaSimulator(ua, profile, { dir, owned }, opts);
    await sim.startServer(opts.port ?? 0);
  } catch (err) {
    if (owned) await rm(dir, { recursive: true, force: true });
    throw err;
  }
  if (opts.dynamics ?? true) sim.startDynamics();
  return sim;
}
