import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { isJsonObject as isObject } from "../core/json.js";
import { COMMANDS_KEY, type JsonObject, type JsonValue } from "../core/types.js";
import type { CloudShadow, Dialect, JournalRecord, ShadowDevice } from "./dialect.js";
import type { CommandResult, SyncHooks, SyncStats } from "./hooks.js";
import { logInternal, type LogOnce } from "./log-once.js";

/**
 * How far a desired value's timestamp may lie ahead of the gateway's clock. Beyond it the value
 * is bad input and refused: taken as it stands, its timestamp would outrank every real command
 * for the point until the clock caught up (years, for a garbled one). Clocks that drift apart
 * by a day are a problem to fix with NTP, which the refusal's reason says.
 */
export const MAX_DESIRED_AHEAD_MS = 24 * 3600 * 1000;

/** The journal status of a command whose write may or may not have happened yet. */
const EXECUTING = "executing";

/** What the runner needs of the request pump. */
export interface DesiredHost {
  /** Makes staged outcomes (and read-backs) durable and sends them after the send window. */
  flush(): void;
  /**
   * A batch is done: desired is to be cleared once its outcomes are in the cloud. `version` is
   * the push's (exact) or the get's (not: the document's version, not the change's); `points`
   * are the batch's, executed or not, for a dialect that clears desired point by point.
   */
  settled(
    device: ShadowDevice,
    version: number,
    versionIsExact: boolean,
    points: readonly string[],
  ): void;
}

interface DeviceCommands extends ShadowDevice {
  /** Desired executions run one after another per device. */
  executing: Promise<void>;
  /** Batches queued or executing: desired is cleared only once none is left. */
  batches: number;
  /**
   * Per point, the last command refused (timestamp and value), so that a redelivery of it is a
   * duplicate. Refused commands stay out of the journal: they must not move the point's
   * "last executed" mark, or a refusal stamped in the future would block every real command.
   */
  refused: Map<string, string>;
  /** Desired values received and not executed yet, per point: the latest queued. */
  pending: Map<string, Entry>;
}

interface Entry {
  readonly point: string;
  readonly value: JsonValue;
  readonly ts: number;
  /** A command from the local API rather than the cloud's desired state. */
  readonly local?: boolean;
}

/** The mark of a local command's outcome under `_commands` (cloud outcomes carry none). */
export const LOCAL_SOURCE = "local";

/**
 * Runs desired values as commands, each once: per device in the order received; the journal,
 * through the dialect's rule, says which are new; the guard here refuses the reserved key and
 * values stamped far in the future, the execute hook (the command guard and the write) does
 * the rest. Every outcome goes into the reported shadow under `_commands`.
 */
export class DesiredRunner {
  private readonly devices = new Map<string, DeviceCommands>();

  constructor(
    devices: readonly ShadowDevice[],
    private readonly dialect: Dialect,
    private readonly hooks: SyncHooks,
    private readonly host: DesiredHost,
    private readonly stats: SyncStats,
    private readonly once: LogOnce,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    for (const d of devices) {
      this.devices.set(d.deviceName, {
        productKey: d.productKey,
        deviceName: d.deviceName,
        executing: Promise.resolve(),
        batches: 0,
        refused: new Map(),
        pending: new Map(),
      });
    }
  }

  /** Desired batches are queued or executing for the device. */
  busy(deviceName: string): boolean {
    return (this.devices.get(deviceName)?.batches ?? 0) > 0;
  }

  /** Resolves when every device's queued desired executions have finished. */
  async idle(): Promise<void> {
    await Promise.all([...this.devices.values()].map((c) => c.executing));
  }

  /**
   * Queues the desired values of a shadow (a push's, `versionIsExact`, or a get's) behind the
   * device's earlier ones.
   */
  run(deviceName: string, shadow: CloudShadow, version: number, versionIsExact: boolean): void {
    const c = this.devices.get(deviceName);
    if (!c) return;
    const entries = this.flatten(c, shadow);
    if (entries.length === 0) return;
    for (const e of entries) c.pending.set(e.point, e);
    c.batches++;
    const batch = async (): Promise<void> => {
      try {
        for (const e of entries) {
          try {
            await this.runOne(c, e, version);
          } finally {
            if (c.pending.get(e.point) === e) c.pending.delete(e.point);
          }
        }
      } finally {
        c.batches--;
      }
      this.host.settled(
        c,
        version,
        versionIsExact,
        entries.map((e) => e.point),
      );
    };
    // A batch that throws must not break the chain: every later command would wait on it.
    c.executing = c.executing
      .then(batch)
      .catch((err: unknown) =>
        logInternal(this.log, "executing desired values", err, { device: c.deviceName }),
      );
  }

  /** The device's desired values queued and not executed yet, by point. */
  pending(deviceName: string): Record<string, JsonValue> {
    const c = this.devices.get(deviceName);
    return Object.fromEntries([...(c?.pending.values() ?? [])].map((e) => [e.point, e.value]));
  }

  /**
   * A command from the local API, run as a desired value is: behind the device's queued cloud
   * commands, journaled (so that an older cloud desired value redelivered after a reconnect does
   * not overwrite it), through the execute hook's guard, write and read-back, its outcome
   * staged under `_commands` marked `source: "local"`. It is stamped with the gateway's clock in
   * the dialect's unit and keeps the journal's version: the dialect's new-command rule then lets
   * any later cloud command through. Always runs: an operator repeating a value means it.
   */
  local(deviceName: string, point: string, value: JsonValue): Promise<JsonObject> {
    const c = this.devices.get(deviceName);
    if (!c) return Promise.resolve({ status: "rejected", reason: "unknown device" });
    // The dialect's timestamps are a whole number of its units (Alibaba: seconds).
    const unitMs = this.dialect.timestampMs(1);
    const entry: Entry = { point, value, ts: Math.floor(this.now() / unitMs), local: true };
    const run = c.executing.then(async () => {
      const last = this.hooks.journal.last(c.productKey, c.deviceName, point);
      return (await this.execute(c, entry, last?.version ?? 0, last, false)).outcome;
    });
    c.executing = run.then(
      () => undefined,
      (err: unknown) =>
        logInternal(this.log, "executing a local command", err, { device: deviceName }),
    );
    return run.catch((err: unknown) => ({
      status: "failed",
      ts: entry.ts,
      reason: `internal error: ${err instanceof Error ? err.message : String(err)}`,
      source: LOCAL_SOURCE,
    }));
  }

  /** Desired values -> dotted point names, with the timestamp of their top-level attribute. */
  private flatten(c: DeviceCommands, shadow: CloudShadow): Entry[] {
    const points = new Set(this.hooks.pointNames(c.deviceName));
    const out: Entry[] = [];
    const walk = (prefix: string, value: JsonValue, inherited: number): void => {
      if (value === null) return; // cleared
      const own = Object.hasOwn(shadow.desiredTimestamps, prefix);
      const ts = (own && shadow.desiredTimestamps[prefix]) || inherited;
      if (!points.has(prefix) && isObject(value)) {
        for (const [k, v] of Object.entries(value)) walk(`${prefix}.${k}`, v, ts);
      } else out.push({ point: prefix, value, ts });
    };
    for (const [attr, value] of Object.entries(shadow.desired)) {
      walk(attr, value, shadow.desiredTimestamps[attr] ?? 0);
    }
    return out;
  }

  private async runOne(c: DeviceCommands, e: Entry, version: number): Promise<void> {
    const { productKey: pk, deviceName: dn } = c;
    const offered = { ts: e.ts, version, value: JSON.stringify(e.value) };
    const last = this.hooks.journal.last(pk, dn, e.point);
    // A command whose intent was journaled but whose outcome was not: the gateway died in
    // between. Whether the write landed is read from the device, not guessed.
    const interrupted =
      last?.status === EXECUTING && last.ts === offered.ts && last.value === offered.value;
    if (
      !interrupted &&
      (!this.dialect.isNewCommand(last, offered) ||
        c.refused.get(e.point) === `${offered.ts}:${offered.value}`)
    ) {
      this.stats.duplicateCommands++;
      return;
    }
    await this.execute(c, e, version, last, interrupted);
  }

  /**
   * Journals a command's intent, executes it, stages its outcome under `_commands` and
   * journals the outcome (a refusal puts the previous entry back). Returns the outcome as
   * staged.
   */
  private async execute(
    c: DeviceCommands,
    e: Entry,
    version: number,
    last: (JournalRecord & { status: string }) | undefined,
    interrupted: boolean,
  ): Promise<{ outcome: JsonObject }> {
    const { productKey: pk, deviceName: dn } = c;
    const offered = { ts: e.ts, version, value: JSON.stringify(e.value) };
    const refusedKey = `${offered.ts}:${offered.value}`;
    let result = this.refusal(c, e);
    const journaled = result === undefined;
    if (result === undefined) {
      try {
        this.hooks.journal.record(pk, dn, e.point, { ...offered, status: EXECUTING });
        result = await this.hooks.execute(dn, e.point, e.value, { resume: interrupted });
      } catch (err) {
        // No intent on record, no write: executing it anyway could run it twice later.
        result = {
          status: "failed",
          reason: `the command journal refused the write: ${(err as Error).message}`,
        };
      }
    }
    this.stats.commands[result.status]++;
    // The outcome (and the read-back the executor staged) is made durable before the journal
    // says the command is done, and at once, not at the end of the batch: once the journal says
    // done, the command never runs again, so a SIGKILL in between must find it still
    // "executing", which a restart resolves by reading the device and then reports, rather
    // than done with its outcome lost.
    const outcome: JsonObject = {
      status: result.status,
      ts: e.ts,
      version,
      ...(result.reason !== undefined && { reason: result.reason }),
      ...(result.value !== undefined && { value: result.value }),
      ...(e.local && { source: LOCAL_SOURCE }),
    };
    this.hooks.backlog.stage(pk, dn, { [COMMANDS_KEY]: { [e.point]: outcome } });
    this.hooks.outcome?.(dn, e.point, outcome);
    // Whatever that flush made durable (a poll's reports too) goes after the send window.
    this.host.flush();
    try {
      if (result.status !== "rejected") {
        c.refused.delete(e.point);
        this.hooks.journal.record(pk, dn, e.point, { ...offered, status: result.status });
      } else {
        // Nothing was written: the point's last executed command stays what it was.
        if (!e.local) c.refused.set(e.point, refusedKey);
        if (journaled) this.restore(c, e.point, last, interrupted);
      }
    } catch (err) {
      this.log.error(
        { device: dn, point: e.point, err, code: ErrorCodes.STORE_REFUSED },
        "the command journal refused the outcome; after a restart the device is read before any rewrite",
      );
    }
    return { outcome };
  }

  /** Why a desired value is refused before the execute hook sees it, if it is. */
  private refusal(c: DeviceCommands, e: Entry): CommandResult | undefined {
    if (e.point === COMMANDS_KEY || e.point.startsWith(`${COMMANDS_KEY}.`)) {
      return { status: "rejected", reason: `${COMMANDS_KEY} is reserved for command outcomes` };
    }
    const aheadMs = this.dialect.timestampMs(e.ts) - this.now();
    if (aheadMs <= MAX_DESIRED_AHEAD_MS) return undefined;
    this.once.run(`ahead:${c.deviceName}`, () =>
      this.log.warn(
        {
          device: c.deviceName,
          point: e.point,
          ts: e.ts,
          aheadMs,
          code: ErrorCodes.SHADOW_BAD_MESSAGE,
        },
        "refused a desired value stamped far in the future (logged once per device)",
      ),
    );
    return {
      status: "rejected",
      reason: `its timestamp ${e.ts} is ${formatAhead(aheadMs)} ahead of the gateway's clock (at most ${formatAhead(MAX_DESIRED_AHEAD_MS)} is accepted); check both clocks (NTP)`,
    };
  }

  /**
   * Puts back the journal entry a refused command replaced with its intent. An interrupted
   * command that is refused on resume leaves no entry: its predecessor is not known any more.
   */
  private restore(
    c: DeviceCommands,
    point: string,
    previous: (JournalRecord & { status: string }) | undefined,
    interrupted: boolean,
  ): void {
    if (previous && !interrupted) {
      this.hooks.journal.record(c.productKey, c.deviceName, point, previous);
    } else this.hooks.journal.forget(c.productKey, c.deviceName, point);
  }
}

/** 90061000 -> "1 d 1 h", for messages about clocks. */
function formatAhead(ms: number): string {
  const hours = ms / 3_600_000;
  if (!Number.isFinite(hours) || hours >= 24 * 365 * 1000) return "over a thousand years";
  if (hours < 1) return `${Math.round(ms / 60_000)} min`;
  const days = Math.floor(hours / 24);
  const rest = Math.floor(hours - days * 24);
  return days > 0 ? `${days} d ${rest} h` : `${rest} h`;
}
