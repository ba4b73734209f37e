#!/usr/bin/python3
"""B4's and B12's site: N pymodbus Modbus TCP servers in one Python process (not the
gateway's), each with U unit ids of P float32 points (holding registers 0.., big-endian ABCD,
2 per point) and one writable set point (holding register 2 * P, uint16).

    PYENV_VERSION=system python3 pymodbus-site.py SERVERS UNITS POINTS [PERIOD_S]

Prints `ready <port>,<port>,...` once every server listens on 127.0.0.1. Every PERIOD_S seconds
(default 1) every value of every unit changes. Commands on stdin, one a line:

    freeze        stop changing; answers `frozen <json>`: {"s.u": [values as float32]} for
                  every server index s (0-based) and unit id u, the values the registers hold
    thaw          change again every period
    period X      change every X seconds from now on
    restart S X   server S goes away (its connections closed, its port refused) and comes back
                  on the same port after X seconds, its registers kept, like a PLC restarting;
                  answers `restarted S` once it listens again
    writes        answers `writes <json>`: {"s.u": [every value written to the unit's set point
                  over the wire, in order]}

It exits when stdin closes (the bench died or is done), on SIGTERM or SIGINT.
"""

import asyncio
import json
import logging
import math
import signal
import struct
import sys
import threading

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.server import StartAsyncTcpServer

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def values_at(tick, s, u, points):
    """The float32 values of unit u of server s at a tick: every one differs from the last."""
    raw = [
        20.0 + 10.0 * math.sin(0.37 * tick + 0.71 * k + 1.3 * s + 0.29 * u) + 0.001 * tick
        for k in range(points)
    ]
    return list(struct.unpack(f">{points}f", struct.pack(f">{points}f", *raw)))


class SetPointBlock(ModbusSequentialDataBlock):
    """Holding registers that record what clients write at or past `watch` (the set point)."""

    def __init__(self, address, values, watch, log):
        super().__init__(address, values)
        self.watch = watch
        self.log = log

    def setValues(self, address, values):
        if address >= self.watch:
            self.log.extend(values if isinstance(values, list) else [values])
        super().setValues(address, values)


def registers_of(values):
    n = len(values)
    return list(struct.unpack(f">{2 * n}H", struct.pack(f">{n}f", *values)))


async def serve(context, port):
    # Reusing the address lets a restarted server bind its port while the old connections close.
    server = await StartAsyncTcpServer(
        context=context,
        address=("127.0.0.1", port),
        defer_start=True,
        allow_reuse_address=True,
    )
    task = asyncio.create_task(server.serve_forever())
    await asyncio.wait_for(asyncio.ensure_future(server.serving), 10)
    return server, task


async def main():
    servers_n, units_n, points = (int(a) for a in sys.argv[1:4])
    period = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # slaves[(s, u)] -> context
    slaves = {}
    writes = {}
    contexts_of = []
    servers = []
    tasks = []
    ports = []
    for s in range(servers_n):
        contexts = {}
        for u in range(1, units_n + 1):
            log = writes.setdefault(f"{s}.{u}", [])
            ctx = ModbusSlaveContext(
                di=ModbusSequentialDataBlock(0, [False] * 8),
                co=ModbusSequentialDataBlock(0, [False] * 8),
                hr=SetPointBlock(0, [0] * (2 * points + 8), 2 * points, log),
                ir=ModbusSequentialDataBlock(0, [0] * 8),
                zero_mode=True,
            )
            contexts[u] = ctx
            slaves[(s, u)] = ctx
        context = ModbusServerContext(slaves=contexts, single=False)
        contexts_of.append(context)
        server, task = await serve(context, 0)
        servers.append(server)
        tasks.append(task)
        ports.append(server.server.sockets[0].getsockname()[1])

    state = {"tick": 0, "frozen": False, "period": period, "current": {}}

    def update():
        state["tick"] += 1
        for (s, u), ctx in slaves.items():
            vals = values_at(state["tick"], s, u, points)
            state["current"][f"{s}.{u}"] = vals
            ctx.setValues(3, 0, registers_of(vals))

    update()
    print("ready " + ",".join(str(p) for p in ports), flush=True)

    async def ticker():
        while not stop.is_set():
            await asyncio.sleep(state["period"])
            if not state["frozen"]:
                update()

    async def restart(s, pause):
        await servers[s].shutdown()
        tasks[s].cancel()
        await asyncio.sleep(pause)
        servers[s], tasks[s] = await serve(contexts_of[s], ports[s])
        print(f"restarted {s}", flush=True)

    def command(line):
        words = line.split()
        if not words:
            return
        if words[0] == "restart" and len(words) > 2:
            asyncio.ensure_future(restart(int(words[1]), float(words[2])))
        elif words[0] == "writes":
            print("writes " + json.dumps(writes), flush=True)
        elif words[0] == "freeze":
            state["frozen"] = True
            print("frozen " + json.dumps(state["current"]), flush=True)
        elif words[0] == "thaw":
            state["frozen"] = False
        elif words[0] == "period" and len(words) > 1:
            state["period"] = float(words[1])

    def watch_stdin():
        for line in sys.stdin:
            loop.call_soon_threadsafe(command, line)
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    tick_task = asyncio.create_task(ticker())
    await stop.wait()
    tick_task.cancel()
    for server in servers:
        await server.shutdown()
    for task in tasks:
        task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
