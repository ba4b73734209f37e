// @ts-check
/**
 * Hosts Modbus TCP simulators (our own, from dist/) in a process of their own, so that the
 * benchmarked client and the simulated devices do not share an event loop (and, when pinned,
 * not a core either). Driven over the Node IPC channel: every message is
 * `{ id, cmd, ...args }` and gets exactly one reply `{ id, ok, value | error }`.
 *
 * Commands:
 * - start { slaves, unitId }: one simulator per slave on 127.0.0.1, port 0, hosting `unitId`,
 *   holding registers filled with registerValue(slave, address); replies the ports.
 * - reset: zeroes every simulator's counters.
 * - stats: per slave, what its simulator served (its own counters).
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

/** @type {{ sim: InstanceType<typeof ModbusTcpSimulator>, port: number }[]} */
const slaves = [];
let unitId = 1;

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

async function stopAll() {
  await Promise.all(slaves.map((s) => s.sim.stop()));
}

/**
 * @param {{ cmd?: unknown, slaves?: unknown, unitId?: unknown }} msg
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
