import { spawn } from "node:child_process";
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startSimulator, type RunningSimulator } from "../../src/sim/modbus/index.js";
import { keepLog } from "../helpers/logs.js";

const root = path.resolve(import.meta.dirname, "../..");
const main = path.join(root, "dist/cli/main.js");
const exampleConfig = path.join(root, "config/gateway.yaml");

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI; `onStderr` may act on output as it arrives (e.g. send a signal). */
function cli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  onStderr?: (text: string, child: ReturnType<typeof spawn>) => void,
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
      onStderr?.(stderr, child);
    });
    child.on("error", reject);
    child.on("close", (code) => {
      keepLog("cli", stderr);
      resolve({ code, stdout, stderr });
    });
  });
}

let sim: RunningSimulator | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

/** The default boiler profile with its dynamics stopped, so values are exact. */
async function quietBoiler(): Promise<RunningSimulator> {
  sim = await startSimulator({ port: 0 });
  sim.sim.profile?.stop();
  return sim;
}

/** A copy of the shipped config and mappings that a test may edit, with its own dataDir. */
async function copyExample(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "sg-cli-"));
  await cp(path.join(root, "config"), path.join(dir, "config"), { recursive: true });
  await cp(path.join(root, "mappings"), path.join(dir, "mappings"), { recursive: true });
  return dir;
}

describe("shadowgate CLI", () => {
  it("validate prints the three broken mappings' problems at once and exits 2", async () => {
    const r = await cli(["validate", "-c", "test/fixtures/broken/gateway.yaml"]);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split("\n");
    expect(lines.slice(0, 3).map((l) => l.split(" ")[0])).toEqual([
      "test/fixtures/broken/mappings/a-wrong-type.yaml:7:11",
      "test/fixtures/broken/mappings/b-unknown-source.yaml:3:9",
      "test/fixtures/broken/mappings/c-syntax.yaml:6:3",
    ]);
    expect(lines[3]).toBe("3 problems found");
  });

  it("validate accepts the shipped example", async () => {
    const r = await cli(["validate", "-c", "config/gateway.yaml"]);
    expect(r).toMatchObject({ code: 0, stdout: "ok: 1 source(s), 1 device(s), 7 point(s)\n" });
  });

  it("validate prints an AWS config's warnings and exits 0", async () => {
    const dir = await copyExample();
    const config = path.join(dir, "config", "gateway.yaml");
    const text = await readFile(config, "utf8");
    await writeFile(
      config,
      text.replace(
        /cloud:[\s\S]*?(?=mappings:)/,
        'cloud: { dialect: aws, url: "mqtt://127.0.0.1:1883", clientId: edge-01 }\n',
      ),
    );
    const points = Array.from(
      { length: 200 },
      (_, i) => `  register_number_${i}: { register: ${40101 + i}, writable: true }\n`,
    ).join("");
    await writeFile(
      path.join(dir, "mappings", "boiler-01.yaml"),
      `version: 1\ndevice: { thingName: boiler-01 }\nsource: plc1\npoints:\n${points}`,
    );
    const r = await cli(["validate", "-c", config]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("ok: 1 source(s), 1 device(s), 200 point(s)\n");
    expect(r.stderr).toMatch(
      /^warning: \S*mappings\/boiler-01\.yaml:4:1 points: the reported document of boiler-01 could reach about \d+ bytes/,
    );
  });

  it("read --json prints one object keyed by deviceName with the simulator's values", async () => {
    const s = await quietBoiler();
    const r = await cli(["read", "-c", exampleConfig, "--json"], { PLC_PORT: String(s.port) });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      "boiler-01": {
        temperature: 21.5,
        targetTemperature: 60,
        running: true,
        doorOpen: false,
        state: "idle",
        alarm: { overheat: false },
        flow: 120,
      },
    });
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
  });

  it("--override sets config keys as if the file said them, and a bad one is named", async () => {
    const s = await quietBoiler();
    // The example points at PLC_PORT (default 5020): the override sends it to the simulator.
    const r = await cli([
      "read",
      "-c",
      exampleConfig,
      "--json",
      "--override",
      "sources.plc1.host=127.0.0.1",
      "--override",
      `sources.plc1.port=${s.port}`,
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ "boiler-01": { targetTemperature: 60 } });
    const bad = await cli([
      "validate",
      "-c",
      exampleConfig,
      "--override",
      "sources.plc1.port=http",
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^--override sources\.plc1\.port=http: sources\.plc1\.port: /m);
    expect(bad.stderr).not.toContain("    at ");
    const usage = await cli(["validate", "-c", exampleConfig, "--override", "port"]);
    expect(usage.code).toBe(64);
    expect(usage.stderr).toContain("write key.path=value");
  });

  it("read omits bad points from the JSON, lists them on stderr and exits 1", async () => {
    const s = await quietBoiler();
    // Input register 12 (flow) becomes an illegal address.
    s.sim.unit(1).addHole({ table: "input", from: 12, to: 12 });
    const r = await cli(["read", "-c", exampleConfig, "--json", "--device", "boiler-01"], {
      PLC_PORT: String(s.port),
    });
    expect(r.code).toBe(1);
    const json = JSON.parse(r.stdout) as Record<string, Record<string, unknown>>;
    expect(json["boiler-01"]).not.toHaveProperty("flow");
    expect(json["boiler-01"]).toHaveProperty("temperature", 21.5);
    expect(r.stderr).toMatch(/^bad: boiler-01 flow: SG_MODBUS_ILLEGAL_ADDRESS .*exception 02/m);
  });

  it("read --raw shows the words under every byte order", async () => {
    const s = await quietBoiler();
    const r = await cli(["read", "-c", exampleConfig, "--raw", "temperature"], {
      PLC_PORT: String(s.port),
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("words: 0x41AC 0x0000");
    expect(r.stdout).toMatch(/^ABCD\s+21\.5\s+<- configured$/m);
    expect(r.stdout).toMatch(/^CDAB\s+\S+$/m);
    expect(r.stdout).toMatch(/^BADC\s+/m);
    expect(r.stdout).toMatch(/^DCBA\s+/m);
  });

  it("run polls until SIGTERM and then stops cleanly with exit 0", async () => {
    const s = await quietBoiler();
    let signalled = false;
    const r = await cli(
      ["run", "-c", exampleConfig],
      { PLC_PORT: String(s.port), SHADOWGATE_LOG_LEVEL: "info", CLOUD_URL: "mqtt://127.0.0.1:9" },
      (text, child) => {
        if (!signalled && text.includes('"msg":"gateway started"')) {
          signalled = true;
          child.kill("SIGTERM");
        }
      },
    );
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('"to":"online"');
    expect(r.stderr).toContain('"msg":"stopped"');
  });

  it("run reloads on SIGHUP, refusing a broken config and keeping the running one", async () => {
    const s = await quietBoiler();
    const dir = await copyExample();
    const mapping = path.join(dir, "mappings/boiler-01.yaml");
    const good = await readFile(mapping, "utf8");
    const steps: Array<[string, (child: ReturnType<typeof spawn>) => Promise<void>]> = [
      [
        '"msg":"gateway started"',
        async (child) => {
          await writeFile(mapping, good.replace("type: float32", "type: float33"));
          child.kill("SIGHUP");
        },
      ],
      [
        '"msg":"reload refused',
        async (child) => {
          await writeFile(mapping, good);
          child.kill("SIGHUP");
        },
      ],
      ['"msg":"reloaded in place"', async (child) => void child.kill("SIGTERM")],
    ];
    const r = await cli(
      ["run", "-c", path.join(dir, "config/gateway.yaml")],
      { PLC_PORT: String(s.port), SHADOWGATE_LOG_LEVEL: "info", CLOUD_URL: "mqtt://127.0.0.1:9" },
      (text, child) => {
        const [marker, act] = steps[0] ?? [];
        if (marker && act && text.includes(marker)) {
          steps.shift();
          void act(child);
        }
      },
    );
    expect(r.code).toBe(0);
    expect(steps).toHaveLength(0);
    expect(r.stderr).toMatch(
      /boiler-01\.yaml:\d+:\d+ points\.temperature\.type: \\"float33\\" is not allowed/,
    );
    expect(r.stderr).toContain('"msg":"stopped"');
  });

  it("history shows what was recorded while the uplink was down", async () => {
    const s = await quietBoiler();
    const dir = await copyExample();
    const config = path.join(dir, "config/gateway.yaml");
    // No cloud listens on port 9: every report stays in the outbox.
    const env = {
      PLC_PORT: String(s.port),
      CLOUD_URL: "mqtt://127.0.0.1:9",
      SHADOWGATE_LOG_LEVEL: "info",
    };
    /** Polls `history --point flow` until it shows `value`, bounded. */
    const flowSeen = async (value: number): Promise<void> => {
      for (let i = 0; i < 100; i++) {
        const h = await cli([
          "history",
          "-c",
          config,
          "--device",
          "boiler-01",
          "--point",
          "flow",
          "--json",
        ]);
        if (h.stdout.includes(`"value":${value}`)) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`history never showed flow ${value}`);
    };
    let started = false;
    const run = await cli(["run", "-c", config], env, (text, child) => {
      if (started || !text.includes('"msg":"gateway started"')) return;
      started = true;
      void (async () => {
        await flowSeen(120);
        // Two changes in the PLC while offline.
        s.sim.profile?.set("flow", 131);
        s.sim.profile?.set("targetTemperature", 65);
        await flowSeen(131);
        child.kill("SIGTERM");
      })();
    });
    expect(run.code).toBe(0);
    const all = await cli(["history", "-c", config, "--device", "boiler-01", "--json"]);
    expect(all.code).toBe(0);
    const rows = all.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows.every((r) => r.state === "queued" && r.device === "boiler-01")).toBe(true);
    expect(rows[0]?.reported).toMatchObject({
      temperature: 21.5,
      flow: 120,
      targetTemperature: 60,
    });
    const flow = await cli([
      "history",
      "-c",
      config,
      "--device",
      "boiler-01",
      "--point",
      "flow",
      "--since",
      "1h",
    ]);
    const values = flow.stdout
      .trim()
      .split("\n")
      .map((l) => l.split(/\s+/).pop());
    expect(values).toEqual(["120", "131"]);
    expect(flow.stdout).toMatch(/^\d{4}-\d\d-\d\dT\S+Z {2}#\d+ {2}queued {2}120$/m);
    expect((await cli(["history", "-c", config, "--device", "nope"])).code).toBe(64);
    expect(
      (await cli(["history", "-c", config, "--device", "boiler-01", "--since", "soon"])).code,
    ).toBe(64);
  });

  it("a bad config stops run before anything connects, with exit 2", async () => {
    const r = await cli(["run", "-c", "test/fixtures/broken/gateway.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("a-wrong-type.yaml:7:11");
  });

  it("demo --once shows the simulated boiler's shadow", async () => {
    const r = await cli(["demo", "--once"]);
    expect(r.code).toBe(0);
    const shadow = JSON.parse(r.stdout) as Record<string, Record<string, unknown>>;
    expect(Object.keys(shadow)).toEqual(["boiler-01"]);
    expect(shadow["boiler-01"]).toMatchObject({
      running: true,
      doorOpen: false,
      targetTemperature: 60,
    });
    expect(typeof shadow["boiler-01"]?.temperature).toBe("number");
  });

  it.each([
    [
      "alibaba",
      {
        ShadowMessage: { method: "update", state: { desired: { targetTemperature: 80 } } },
        DeltaUpdate: true,
      },
    ],
    ["aws", { state: { desired: { targetTemperature: 80 } } }],
  ])(
    "demo --dialect %s: a desired value set over HTTP arrives in the simulated PLC and its read-back in the cloud shadow",
    async (dialect, desired) => {
      let posted = false;
      let seen: unknown;
      // The console the demo prints serves its page and the plant's devices.
      let consoleCheck: Promise<{ page: string; devices: unknown }> | undefined;
      const child = spawn(process.execPath, [main, "demo", "--dialect", dialect], {
        cwd: root,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      const done = new Promise<void>((resolve, reject) => {
        child.on("error", reject);
        child.on("close", () => resolve());
      });
      child.stdout.on("data", (b: Buffer) => {
        out += b.toString();
        const consoleUrl = /Web console +(http\S+)/.exec(out)?.[1];
        if (consoleUrl && !consoleCheck)
          consoleCheck = Promise.all([
            fetch(consoleUrl).then((r) => r.text()),
            fetch(`${consoleUrl}api/v1/devices`).then((r) => r.json()),
          ]).then(([page, devices]) => ({ page, devices }));
        const url = /curl -s -X POST (\S+)/.exec(out)?.[1];
        if (url && !posted) {
          posted = true;
          void fetch(url, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(desired),
          });
        }
        for (const line of out.split("\n")) {
          if (!line.startsWith("{")) continue;
          const s = JSON.parse(line) as {
            plc: { targetTemperature: number };
            cloud: Record<string, { reported?: Record<string, unknown> }>;
          };
          const reported = s.cloud["boiler-01"]?.reported;
          if (
            s.plc.targetTemperature === 80 &&
            reported?.targetTemperature === 80 &&
            seen === undefined
          ) {
            seen = reported._commands;
            void (consoleCheck ?? Promise.resolve()).finally(() => child.kill("SIGTERM"));
          }
        }
      });
      await done;
      expect(seen).toMatchObject({ targetTemperature: { status: "applied", value: 80 } });
      const shown = await consoleCheck;
      expect(shown?.page).toContain("<title>Shadowgate console</title>");
      expect(shown?.devices).toMatchObject({ devices: [{ name: "boiler-01", online: true }] });
    },
  );

  it("has --help on every command, --version, and exit 64 for a bad command line", async () => {
    for (const args of [
      [],
      ["validate"],
      ["read"],
      ["run"],
      ["demo"],
      ["sim", "modbus"],
      ["schemas"],
    ]) {
      const r = await cli([...args, "--help"]);
      expect(r.code, args.join(" ")).toBe(0);
      expect(r.stdout).toContain("Usage: shadowgate");
    }
    expect((await cli(["--version"])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect((await cli(["read", "--no-such-option"])).code).toBe(64);
    expect((await cli(["frobnicate"])).code).toBe(64);
  });
});
