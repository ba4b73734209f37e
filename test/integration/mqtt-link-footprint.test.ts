import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { closeCloudTestResources, startTestCloud } from "../helpers/cloud.js";

const run = promisify(execFile);
const link = fileURLToPath(new URL("../../dist/north/link.js", import.meta.url));
const logger = fileURLToPath(new URL("../../dist/core/logger.js", import.meta.url));

afterEach(async () => {
  await closeCloudTestResources();
});

/**
 * In a process of its own (the broker in this one writes packets with mqtt-packet too): a link
 * that connects, subscribes and publishes 200 QoS 1 messages, then how many Buffers
 * mqtt-packet's number cache holds.
 */
const child = `
import { createRequire } from "node:module";
const { MqttLink } = await import(process.env.LINK);
const { silentLogger } = await import(process.env.LOGGER);
const l = new MqttLink({ url: process.env.URL, clientId: "footprint", keepaliveSeconds: 30,
  protocolVersion: 4, reconnectMinMs: 20, reconnectMaxMs: 200 }, silentLogger());
await new Promise((resolve) => { l.once("online", resolve); l.start(); });
await l.subscribe(["t/fp"]);
for (let i = 0; i < 200; i++) await l.publish("t/fp", JSON.stringify({ i }));
const mqttRequire = createRequire(createRequire(process.env.LINK).resolve("mqtt"));
const numbers = mqttRequire("mqtt-packet/numbers.js");
console.log(JSON.stringify({ cached: Object.keys(numbers.cache).length }));
await l.stop();
`;

describe("MqttLink footprint", () => {
  it("never builds mqtt-packet's 65,536-Buffer number cache", async () => {
    const cloud = await startTestCloud();
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", child], {
      env: { ...process.env, LINK: link, LOGGER: logger, URL: cloud.mqttUrl },
      timeout: 20_000,
    });
    expect(JSON.parse(stdout.trim())).toEqual({ cached: 0 });
  });
});
