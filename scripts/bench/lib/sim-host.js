// @ts-check
/**
 * Hosts Modbus simulators (our own, from dist/) in a process of their own, so that the
 * benchmarked client and the simulated devices do not share an event loop (and, when pinned,
 * not a core either): TCP slaves (B1), or one RTU slave on a serial line (B2). Driven over the
 * Node IPC channel: every message is `{ id, cmd, ...args }` and gets exactly one reply
 * `{ id, ok, value | error }`.
 *
 * Commands:
 * - start { slaves, unitId }: one simulator per slave on 127.0.0.1, port 0, hosting `unitId`,
 *   holding registers filled with registerValue(slave, address); replies the ports.
 * - reset: zeroes every simulator's counters.
 * - stats: per slave, what its simulator served (its own counters).
 * - rtuStart { path, baud, parity, dataBits, stopBits, unitId }: one simulator hosting `unitId`
 *   on the serial line `path` (a pty end), timing-true at `baud` (answers only after request
 *   wire time + t3.5 + response wire time), holding registers filled with registerValue(0, a).
 * - rtuStats: what the RTU slave served since it started or since the last rtuStats
 *   (RtuSlaveStats); `{ reset: true }` zeroes the counters after reading them.
 * - rtuStop: closes the serial line and drops the RTU simulator.
 * - stop: stops every simulator (destroys connections, closes listeners), replies, exits.
 */
import { ModbusTcpSimulator } from "./dist.js";
import { registerValue } from "./modbus-layout.js";

/**
 * @typedef {object} SlaveStats
 * @property {number} port
 * @property {number} framesReceived  complete frames, answered or not
 * @property {number} served          requests answered by the hosted unit (any function code)
 * @property {number} exceptions      exception responses among them
 * @property {number} unanswered      requests left unanswered (unknown or silent unit)
 * @property {number} openConnections
 * @property {number} acceptedConnections
 */

/**
 * @typedef {object} RtuSlaveStats
 * @property {number} framesReceived  frames with a good CRC, answered or not
 * @property {number} served          requests answered by the hosted unit
 * @property {number} exceptions
 * @property {number} unanswered
 * @property {number} crcErrors       frames dropped for a bad CRC
 * @property {number} partialFrames   bytes that never made a frame before a silence
 */

/** @type {{ sim: InstanceType<typeof ModbusTcpSimulator>, port: number }[]} */
const slaves = [];
let unitId = 1;
/** @type {{ sim: InstanceType<typeof ModbusTcpSimulator>, unitId: number } | undefined} */
let rtu;

/**
 * @param {{ slaves?: unknown, unitId?: unknown }} msg
 * @returns {Promise<number[]>}
 */
async function start(msg) {
  const count = Number(msg.slaves);
  unitId = Number(msg.unitId ?? 1);
  if (!Number.isInteger(count) || count < 1 || count > 100) throw new RangeError("slaves: 1..100");
  for (let i = 0; i < count; i++) {
    const sim = new ModbusTcpSimulator({ units: [unitId] });
    const holding = sim.unit(unitId).holding;
    for (let a = 0; a < holding.length; a++) holding[a] = registerValue(i, a);
    const { port } = await sim.start({ host: "127.0.0.1", port: 0 });
    slaves.push({ sim, port });
  }
  return slaves.map((s) => s.port);
}

/** @returns {SlaveStats[]} */
function stats() {
  return slaves.map(({ sim, port }) => {
    const s = sim.stats();
    const exceptions = Object.values(s.exceptions[unitId] ?? {}).reduce((a, b) => a + b, 0);
    return {
      port,
      framesReceived: s.requests,
      served: sim.served(unitId),
      exceptions,
      unanswered: s.unanswered.unknownUnit + s.unanswered.silent,
      openConnections: s.connections.open,
      acceptedConnections: s.connections.accepted,
    };
  });
}

/**
 * @param {Record<string, unknown>} msg
 * @returns {Promise<null>}
 */
async function rtuStart(msg) {
  if (rtu !== undefined) throw new Error("an RTU slave is already running (rtuStop first)");
  const id = Number(msg["unitId"] ?? 1);
  const parity = String(msg["parity"] ?? "none");
  const dataBits = Number(msg["dataBits"] ?? 8);
  const stopBits = Number(msg["stopBits"] ?? 1);
  if (parity !== "none" && parity !== "even" && parity !== "odd") throw new RangeError("parity");
  if (dataBits !== 7 && dataBits !== 8) throw new RangeError("dataBits: 7 or 8");
  if (stopBits !== 1 && stopBits !== 2) throw new RangeError("stopBits: 1 or 2");
  const sim = new ModbusTcpSimulator({ units: [id] });
  const holding = sim.unit(id).holding;
  for (let a = 0; a < holding.length; a++) holding[a] = registerValue(0, a);
  await sim.startRtu({
    path: String(msg["path"]),
    baud: Number(msg["baud"]),
    parity,
    dataBits,
    stopBits,
  });
  rtu = { sim, unitId: id };
  return null;
}

/**
 * @param {boolean} reset
 * @returns {RtuSlaveStats}
 */
function rtuStats(reset) {
  if (rtu === undefined) throw new Error("no RTU slave running");
  const { sim, unitId: id } = rtu;
  const s = sim.stats();
  const out = {
    framesReceived: s.requests,
    served: sim.served(id),
    exceptions: Object.values(s.exceptions[id] ?? {}).reduce((a, b) => a + b, 0),
    unanswered: s.unanswered.unknownUnit + s.unanswered.silent,
    crcErrors: s.rtu.crcErrors,
    partialFrames: s.rtu.partialFrames,
  };
  if (reset) sim.resetStats();
  return out;
}

async function rtuStop() {
  const running = rtu;
  rtu = undefined;
  await running?.sim.stop();
}

async function stopAll() {
  await Promise.all([...slaves.map((s) => s.sim.stop()), rtuStop()]);
}

/**
 * @param {{ cmd?: unknown, slaves?: unknown, unitId?: unknown, reset?: unknown }} msg
 * @returns {Promise<unknown>}
 */
async function handle(msg) {
  switch (msg.cmd) {
    case "start":
      return start(msg);
    case "reset":
      for (const s of slaves) s.sim.resetStats();
      return null;
    case "stats":
      return stats();
    case "rtuStart":
      return rtuStart(msg);
    case "rtuStats":
      return rtuStats(msg.reset === true);
    case "rtuStop":
      await rtuStop();
      return null;
    case "stop":
      await stopAll();
      return null;
    default:
      throw new Error(`unknown command ${String(msg.cmd)}`);
  }
}

if (process.send === undefined) {
  console.error("sim-host.js runs as a child with an IPC channel (see b1-coalescing.js)");
  process.exit(64);
}

process.on("message", (raw) => {
  const msg = /** @type {{ id?: unknown, cmd?: unknown, slaves?: unknown, unitId?: unknown }} */ (
    raw
  );
  handle(msg).then(
    (value) => {
      process.send?.({ id: msg.id, ok: true, value }, () => {
        if (msg.cmd === "stop") process.disconnect();
      });
    },
    (err) => {
      process.send?.({
        id: msg.id,
        ok: false,
        error: err instanceof Error ? err.message : String(err),
      });
    },
  );
});

// The parent went away (crash, watchdog): do not linger holding ports.
process.on("disconnect", () => {
  void stopAll().then(() => process.exit(0));
});
