import { afterEach, describe, expect, it } from "vitest";
import {
  startAwsCloudService,
  type AwsCloudServiceOptions,
  type RunningAwsCloudService,
} from "../../src/sim/cloud/aws/index.js";
import { closeCloudTestResources, connectTestClient, httpJson } from "../helpers/cloud.js";
import { testLogger } from "../helpers/logs.js";

/**
 * The local AWS IoT Device Shadow service over MQTT and HTTP, rule by rule, with AWS's topics,
 * shapes and messages (shadow-protocol.md 3), as a device or an application meets it.
 */

const T = "$aws/things/plc-01/shadow";
const clouds: RunningAwsCloudService[] = [];
afterEach(async () => {
  await closeCloudTestResources();
  await Promise.all(clouds.splice(0).map((c) => c.close()));
});

async function service(opts: AwsCloudServiceOptions = {}) {
  const cloud = await startAwsCloudService({
    mqttPort: 0,
    httpPort: 0,
    logger: testLogger(),
    ...opts,
  });
  clouds.push(cloud);
  const device = await connectTestClient(cloud.mqttUrl);
  await device.subscribe(`${T}/+/+`);
  const send = async (op: string, body: unknown) => {
    await device.mqtt.publishAsync(
      `${T}/${op}`,
      typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body),
      { qos: 1 },
    );
  };
  return { cloud, device, send };
}

describe("local AWS shadow service over MQTT", () => {
  it("answers get, update and delete on accepted/rejected, with delta and documents", async () => {
    const { device, send } = await service();
    await send("get", { clientToken: "g1" });
    expect(await device.next()).toMatchObject({
      topic: `${T}/get/rejected`,
      message: { code: 404, message: "No shadow exists with name: 'plc-01'", clientToken: "g1" },
    });
    await send("update", { state: { reported: { sp: 60 } }, clientToken: "u1" });
    expect(await device.next()).toMatchObject({
      topic: `${T}/update/accepted`,
      message: {
        state: { reported: { sp: 60 } },
        metadata: { reported: { sp: { timestamp: expect.any(Number) } } },
        version: 1,
        clientToken: "u1",
      },
    });
    expect(await device.next()).toMatchObject({
      topic: `${T}/update/documents`,
      message: { previous: null, current: { version: 1, state: { reported: { sp: 60 } } } },
    });
    // A stale version is refused; the current one is taken and a delta goes out.
    await send("update", { state: { desired: { sp: 80 } }, version: 0, clientToken: "u2" });
    expect(await device.next()).toMatchObject({
      topic: `${T}/update/rejected`,
      message: { code: 409, message: "Version conflict", clientToken: "u2" },
    });
    await send("update", { state: { desired: { sp: 80 } }, version: 1 });
    expect((await device.next()).topic).toBe(`${T}/update/accepted`);
    expect(await device.next()).toMatchObject({
      topic: `${T}/update/delta`,
      message: {
        state: { sp: 80 },
        metadata: { sp: { timestamp: expect.any(Number) } },
        version: 2,
      },
    });
    expect((await device.next()).topic).toBe(`${T}/update/documents`);
    await send("get", {});
    expect(await device.next()).toMatchObject({
      topic: `${T}/get/accepted`,
      message: {
        state: { desired: { sp: 80 }, reported: { sp: 60 }, delta: { sp: 80 } },
        version: 2,
      },
    });
    // Deleted, the shadow is gone, but its version goes on.
    await send("delete", "");
    expect(await device.next()).toMatchObject({
      topic: `${T}/delete/accepted`,
      message: { version: 2 },
    });
    await send("update", { state: { reported: { sp: 61 } } });
    expect(await device.next()).toMatchObject({ message: { version: 3 } });
  });

  it.each([
    ["not UTF-8", Buffer.from([0xff, 0xfe]), 415, /UTF-8/],
    ["not JSON", "{", 400, /^Invalid JSON$/],
    ["a clientToken over 64 bytes", { state: {}, clientToken: "x".repeat(65) }, 400, /clientToken/],
    ["no state", { clientToken: "c" }, 400, /Missing required node: state/],
    [
      "seven levels",
      { state: { reported: { a: { b: { c: { d: { e: { f: { g: 1 } } } } } } } } },
      400,
      /nesting/,
    ],
    ["over 8 KB", { state: { reported: { a: "x".repeat(9000) } } }, 413, /maximum size/],
  ])("refuses an update with %s", async (_what, body, code, message) => {
    const { device, send } = await service();
    await send("update", body);
    const r = await device.next();
    expect(r.topic).toBe(`${T}/update/rejected`);
    expect(r.message.code).toBe(code);
    expect(r.message.message).toMatch(message);
  });

  it("answers the 11th request in flight on one connection with 429", async () => {
    const { device, send } = await service({ replyDelayMs: 300 });
    for (let i = 0; i < 11; i++) await send("get", { clientToken: `g${i}` });
    const replies = await Promise.all(Array.from({ length: 11 }, () => device.next()));
    const tooMany = replies.filter((r) => r.message.code === 429);
    expect(tooMany).toHaveLength(1);
    expect(tooMany[0]?.message.message).toMatch(/10 in-flight requests on a single connection/);
    expect(replies.filter((r) => r.message.code === 404)).toHaveLength(10);
  });

  it("knows only the things it is given, when given some", async () => {
    const { device, send } = await service({ things: ["plc-02"] });
    await send("update", { state: { reported: { a: 1 } } });
    expect(await device.next()).toMatchObject({
      topic: `${T}/update/rejected`,
      message: { code: 404 },
    });
  });
});

describe("local AWS shadow service over HTTP", () => {
  it("gets and updates a classic and a named shadow as AWS's data plane does", async () => {
    const { cloud, device } = await service();
    await device.subscribe("$aws/things/plc-01/shadow/name/boiler/update/delta");
    const url = `${cloud.httpUrl}/things/plc-01/shadow`;
    expect(await httpJson(url)).toMatchObject({ status: 404, body: { code: 404 } });
    const r = await httpJson(`${url}?name=boiler`, { body: { state: { desired: { sp: 70 } } } });
    expect(r).toMatchObject({ status: 200, body: { state: { desired: { sp: 70 } }, version: 1 } });
    expect((await httpJson(`${url}?name=boiler`)).body).toMatchObject({
      state: { desired: { sp: 70 }, delta: { sp: 70 } },
      version: 1,
    });
    // The device hears of it as a delta on the named shadow.
    expect(await device.next()).toMatchObject({
      topic: "$aws/things/plc-01/shadow/name/boiler/update/delta",
      message: { state: { sp: 70 } },
    });
    expect(
      await httpJson(`${url}?name=boiler`, { body: { state: { desired: { sp: 1 } }, version: 7 } }),
    ).toMatchObject({ status: 409, body: { code: 409, message: "Version conflict" } });
    expect(await httpJson(url, { body: "nope" })).toMatchObject({ status: 400 });
    expect(await httpJson(url, { method: "DELETE" })).toMatchObject({ status: 405 });
  });
});
