/**
 * B7's baseline: the naive desired-value executor that performance.md describes as "QoS 0, no
 * persistent journal, no reconciliation on reconnect". A process of its own, so B7 can kill -9
 * it exactly like the gateway (B7 runs its transpiled copy, build/bench/scripts/bench/lib/):
 *
 *   node naive-executor.js '{"mqttUrl":"mqtt://127.0.0.1:P","plcPort":N,"productKey":"pk",
 *                            "deviceName":"dn","points":{"sp0":10,"sp1":11}}'
 *
 * It subscribes to the device's /shadow/get topic at QoS 0 (mqtt.js reconnecting every 100 ms,
 * clean session) and, for every `control` push, writes each desired attribute it maps to its
 * holding register (FC6) in the push's order, then clears desired with a QoS 0 update at the
 * push's version + 1. A push carries every desired attribute not cleared yet, so it remembers
 * in memory what it executed (attribute, timestamp, value) and skips those: the same rule as
 * the gateway's journal, but not persistent. It keeps nothing across restarts, never sends a
 * `get` (what was pushed while it was offline stays unseen until a later push carries it along),
 * and ignores replies (a refused clear leaves desired in place).
 *
 * With `"dialect":"aws"` the same, AWS-shaped: deltas on `$aws/things/{dn}/shadow/update/delta`
 * (per-leaf metadata), and desired cleared whole with `{"state":{"desired":null}}` and no
 * version, the pattern AWS's documentation shows after applying desired.
 */
import Modbus from "modbus-serial";
import { connect } from "mqtt";

export interface NaiveConfig {
  mqttUrl: string;
  plcPort: number;
  productKey: string;
  deviceName: string;
  /** attribute -> 0-based holding register */
  points: Record<string, number>;
  dialect?: "alibaba" | "aws";
}

const config = JSON.parse(process.argv[2] ?? "{}") as NaiveConfig;
const aws = config.dialect === "aws";
const getTopic = aws
  ? `$aws/things/${config.deviceName}/shadow/update/delta`
  : `/shadow/get/${config.productKey}/${config.deviceName}`;
const updateTopic = aws
  ? `$aws/things/${config.deviceName}/shadow/update`
  : `/shadow/update/${config.productKey}/${config.deviceName}`;

const plc = new Modbus.default();
plc.setTimeout(1000);

/** Connects to the PLC when the connection is not open (again after a failure). */
async function plcReady() {
  if (plc.isOpen) return;
  await plc.connectTCP("127.0.0.1", { port: config.plcPort });
  plc.setID(1);
}

const client = connect(config.mqttUrl, {
  clientId: `naive-${config.deviceName}`,
  clean: true,
  reconnectPeriod: 100,
  connectTimeout: 2000,
});
client.on("connect", () => {
  client.subscribe(getTopic, { qos: 0 });
});
client.on("error", () => undefined);

/** Per attribute, "timestamp:value" of the last value executed; lost with the process. */
const executed: Map<string, string> = new Map();

/** Pushes are handled one after another, in arrival order. */
let queue = Promise.resolve();
client.on("message", (_topic, payload) => {
  queue = queue.then(() => handle(payload)).catch(() => undefined);
});

async function handle(payload: Buffer) {
  let msg: {
    method?: string;
    version?: number;
    payload?: {
      state?: { desired?: Record<string, unknown> };
      metadata?: { desired?: Record<string, { timestamp?: number }> };
    };
    // AWS's delta
    state?: Record<string, unknown>;
    metadata?: Record<string, { timestamp?: number }>;
  };
  try {
    msg = JSON.parse(payload.toString("utf8"));
  } catch {
    return;
  }
  if (!aws && msg.method !== "control") return;
  const desired = (aws ? msg.state : msg.payload?.state?.desired) ?? {};
  const meta = (aws ? msg.metadata : msg.payload?.metadata?.desired) ?? {};
  for (const [name, value] of Object.entries(desired)) {
    const address = config.points[name];
    if (address === undefined || typeof value !== "number") continue;
    const key = `${meta[name]?.timestamp ?? 0}:${value}`;
    if (executed.get(name) === key) continue;
    executed.set(name, key);
    try {
      await plcReady();
      await plc.writeRegister(address, value & 0xffff);
    } catch {
      // No journal, no retry: the value is gone unless a later push carries it again.
    }
  }
  const clear = aws
    ? { state: { desired: null } }
    : { method: "update", state: { desired: "null" }, version: (msg.version ?? 0) + 1 };
  client.publish(updateTopic, JSON.stringify(clear), { qos: 0 });
}
