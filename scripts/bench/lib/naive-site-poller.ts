/**
 * B4's baseline: the naive poller, the floor for "what does the plumbing cost". A process of its
 * own so that B4 measures its CPU and RSS like the gateway's (B4 runs its transpiled copy,
 * build/bench/scripts/bench/lib/):
 *
 *   node naive-site-poller.js '{"mqttUrl":"mqtt://127.0.0.1:P","ports":[N,...],"units":5,
 *                               "points":100,"pollMs":1000,"productKey":"pk"}'
 *
 * One modbus-serial connection per server; every pollMs, each unit of each server is read in
 * requests of at most 125 registers (200 registers: 125 + 75), its float32 values decoded and
 * published as one JSON message per device to mosquitto with mqtt.js (QoS 0). No store, no
 * shadow, no change detection, no reconnection logic beyond retrying on the next tick.
 */
import Modbus from "modbus-serial";
import { connect } from "mqtt";

export interface NaiveSiteConfig {
  mqttUrl: string;
  ports: number[];
  units: number;
  points: number;
  pollMs: number;
  productKey: string;
}

const config = JSON.parse(process.argv[2] ?? "{}") as NaiveSiteConfig;
const REGISTERS = config.points * 2;

const client = connect(config.mqttUrl, { clientId: "b4-naive", reconnectPeriod: 500 });
client.on("error", () => undefined);

async function pollServer(s: number, plc: InstanceType<typeof Modbus.default>) {
  if (!plc.isOpen) await plc.connectTCP("127.0.0.1", { port: config.ports[s] ?? 0 });
  for (let u = 1; u <= config.units; u++) {
    plc.setID(u);
    const parts: Buffer[] = [];
    for (let a = 0; a < REGISTERS; a += 125) {
      const r = await plc.readHoldingRegisters(a, Math.min(125, REGISTERS - a));
      parts.push(r.buffer);
    }
    const buf = Buffer.concat(parts);
    const values: Record<string, number> = {};
    for (let k = 0; k < config.points; k++) values[`p${k}`] = buf.readFloatBE(4 * k);
    client.publish(
      `/naive/${config.productKey}/b4-s${s}-u${u}`,
      JSON.stringify({ ts: Date.now(), values }),
      { qos: 0 },
    );
  }
}

const plcs = config.ports.map(() => {
  const plc = new Modbus.default();
  plc.setTimeout(1000);
  return plc;
});
const busy = plcs.map(() => false);
setInterval(() => {
  plcs.forEach((plc, s) => {
    if (busy[s]) return;
    busy[s] = true;
    pollServer(s, plc)
      .catch(() => undefined)
      .finally(() => (busy[s] = false));
  });
}, config.pollMs);
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
