/**
 * Hostile requests to the local API (issue 17): generated methods, paths (traversal, encoded
 * dots and slashes, NUL, unicode, very long), headers (tokens, content types) and bodies
 * (malformed and deep JSON, wrong shapes, huge) against the daemon over the Modbus simulator,
 * on a real socket. Every answer must be one of the API's own (never a 500, always its error
 * body with a code when refused), nothing outside the console's files is ever served, and the
 * PLC sees a write only for a request that was answered 200 with the value it wrote.
 */
import { readFile } from "node:fs/promises";
import { request } from "node:http";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { testLogger } from "../helpers/logs.js";
import { Service } from "../../src/daemon/service.js";
import { startSimulator, type RunningSimulator } from "../../src/sim/modbus/index.js";
import { fuzz, fuzzRun, LONG, regressionCases } from "./harness.js";
import { shippedBoilerMapping, writeSite } from "../helpers/site.js";

const root = path.resolve(import.meta.dirname, "../..");
const TOKEN = "fuzz-token-0123456789abcdef";
const CI_REQUESTS = 1500;
const LONG_REQUESTS = 100_000;

interface Req {
  readonly method: string;
  readonly path: string;
  readonly auth: "none" | "right" | "wrong";
  readonly contentType?: string;
  readonly body?: string;
}

const segment = fc.oneof(
  fc.constantFrom(
    "api",
    "v1",
    "devices",
    "boiler-01",
    "points",
    "targetTemperature",
    "temperature",
    "running",
    "raw",
    "history",
    "shadow",
    "cloud",
    "events",
    "reload",
    "console",
    "vendor",
    "app.js",
    "..",
    "%2e%2e",
    "%2E%2E%2F",
    "..%2f",
    "%00",
    "%ff",
    "package.json",
    "etc",
    "passwd",
    "é",
    "%C3%A9",
    "",
  ),
  fc.string({ unit: "grapheme-ascii", maxLength: 8 }).map(encodeURIComponent),
);
const reqPath = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.array(segment, { minLength: 1, maxLength: 7 }).map((s) => `/${s.join("/")}`),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "/api/v1/devices/boiler-01/points/targetTemperature",
      "/api/v1/devices/boiler-01/points/running",
      "/console/../package.json",
      "/console/%2e%2e/package.json",
      "/console/vendor/../../package.json",
      "//etc/passwd",
      `/${"a".repeat(10_000)}`,
      "/api/v1/devices/boiler-01/points/targetTemperature/history?max=99999999999999999999",
      "/api/v1/devices/boiler-01/cloud?fresh=1&fresh=0",
      "/?x=%",
    ),
  },
);
const jsonText = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ value: v })),
  fc.constantFrom<string>(
    '{"value": 70}',
    '{"value": 80.5}',
    '{"value": 121}',
    '{"value": -1}',
    '{"value": true}',
    '{"value": "70"}',
    '{"value": 70, "value": 500}',
    '{"__proto__": {"value": 70}}',
    "{value: 1",
    "",
    "null",
    "[]",
    `${"[".repeat(20_000)}${"]".repeat(20_000)}`,
    `{"value": "${"x".repeat(70_000)}"}`,
  ),
  fc.string({ unit: "binary", maxLength: 40 }),
);
const requestArb: fc.Arbitrary<Req> = fc.record(
  {
    method: fc.constantFrom(
      "GET",
      "GET",
      "PUT",
      "PUT",
      "POST",
      "DELETE",
      "PATCH",
      "OPTIONS",
      "HEAD",
    ),
    path: reqPath,
    auth: fc.constantFrom("none", "right", "right", "wrong"),
    contentType: fc.constantFrom(
      "application/json",
      "application/json; charset=utf-8",
      "text/plain",
      "application/xml",
      "multipart/form-data; boundary=x",
      "",
    ),
    body: jsonText,
  },
  { requiredKeys: ["method", "path", "auth"] },
);

/** The answers the API gives on purpose (HEAD and OPTIONS are fastify's own). */
const ANSWERS = new Set([200, 400, 401, 404, 405, 413, 415, 422, 502, 503]);

interface Reply {
  readonly status: number;
  readonly body: string;
  readonly type: string | undefined;
}

function send(port: number, r: Req): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (r.auth !== "none")
      headers.authorization = `Bearer ${r.auth === "right" ? TOKEN : `${TOKEN}!`}`;
    if (r.contentType) headers["content-type"] = r.contentType;
    const withBody = r.body !== undefined && r.method !== "GET" && r.method !== "HEAD";
    const req = request(
      // A connection of its own each: a refused body may end the connection it came on.
      {
        host: "127.0.0.1",
        port,
        method: r.method,
        path: r.path,
        headers,
        timeout: 5000,
        agent: false,
      },
      (res) => {
        // The event stream never ends: its first bytes are enough.
        if (res.headers["content-type"]?.startsWith("text/event-stream")) {
          res.destroy();
          resolve({ status: res.statusCode ?? 0, body: "", type: res.headers["content-type"] });
          return;
        }
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString("utf8"),
            type: res.headers["content-type"],
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () =>
      req.destroy(new Error(`no answer to ${r.method} ${r.path.slice(0, 80)}`)),
    );
    req.on("error", reject);
    req.end(withBody ? r.body : undefined);
  });
}

let sim: RunningSimulator;
let service: Service;
let port = 0;
let packageJson = "";
/** Writes the PLC saw on its set point (holding 9) and its burner (coil 0). */
const writes: Array<{ table: string; address: number }> = [];

beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
  sim.sim.profile?.stop();
  sim.sim.on("write", (w: { table: string; address: number }) => writes.push(w));
  const dir = await writeSite("sg-fuzz-api-", {
    "mappings/boiler-01.yaml": await shippedBoilerMapping(),
    "gateway.yaml": `version: 1\ngateway: { name: fuzz, dataDir: ./data }\nsources:\n  plc1: { protocol: modbus-tcp, host: 127.0.0.1, port: ${sim.port}, timeout: 1s }\napi: { listen: "127.0.0.1:0", token: ${TOKEN} }\nmappings: ./mappings\n`,
  });
  const configFile = path.join(dir, "gateway.yaml");
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  service = new Service(configFile, loaded.config, testLogger());
  await service.start();
  port = service.api?.address?.port ?? 0;
  packageJson = await readFile(path.join(root, "package.json"), "utf8");
});

afterAll(async () => {
  await service?.stop();
  await sim?.close();
});

async function check(r: Req): Promise<void> {
  const before = writes.length;
  const reply = await send(port, r);
  const where = `${r.method} ${r.path.slice(0, 120)} (${r.auth})`;
  expect(
    ANSWERS.has(reply.status),
    `${where} answered ${reply.status}: ${reply.body.slice(0, 200)}`,
  ).toBe(true);
  // Nothing but the console's own files is ever served.
  expect(reply.body.includes(packageJson.slice(0, 80)), where).toBe(false);
  expect(reply.body.includes("root:x:0:0"), where).toBe(false);
  if (reply.status >= 400 && r.method !== "HEAD") {
    const body = JSON.parse(reply.body) as { error?: { code?: string; message?: string } };
    expect(body.error?.code, `${where}: ${reply.body.slice(0, 200)}`).toMatch(/^SG_[A-Z_]+$/);
    expect(body.error?.message, where).toBeTruthy();
  }
  const wrote = writes.length - before;
  if (wrote > 0) {
    // Only an authorised PUT to a writable point, answered 200.
    expect(reply.status, where).toBe(200);
    expect(r.method, where).toBe("PUT");
    expect(r.auth, where).toBe("right");
    expect(r.path, where).toMatch(
      /^\/api\/v1\/devices\/boiler-01\/points\/(targetTemperature|running)$/,
    );
  }
}

describe("hostile requests to the local API", () => {
  it(
    `answer each with the API's own status and error body, serve nothing outside the console, write only what was accepted (${LONG ? "long run" : "CI run"})`,
    async () => {
      await fuzz("api", requestArb, check, fuzzRun(CI_REQUESTS, LONG_REQUESTS));
    },
    LONG ? 0 : 240_000,
  );

  it.each(regressionCases<Req>("api").map((r) => [r.name, r.input] as const))(
    "regression %s",
    async (_name, r) => {
      await check(r);
    },
  );
});
