import { readFile } from "node:fs/promises";
import { createServer as createTlsServer, type Server } from "node:tls";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { Aedes } from "aedes";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { gatewayConfigSchema } from "../../src/config/gateway-schema.js";
import { testLogger } from "../helpers/logs.js";
import { linkOptions } from "../../src/daemon/north.js";
import { MqttLink, type LinkOptions } from "../../src/north/link.js";
import { closeCloudTestResources, connectTestClient, startTestCloud } from "../helpers/cloud.js";
import { describeWithMosquitto } from "../helpers/mosquitto-suite.js";
import { makeCertificates } from "../helpers/tls.js";

const links: MqttLink[] = [];
afterEach(async () => {
  for (const l of links.splice(0)) await l.stop();
  await closeCloudTestResources();
});

function link(opts: Partial<LinkOptions> & { url: string }): MqttLink {
  const l = new MqttLink(
    {
      clientId: `test-${Math.random().toString(16).slice(2)}`,
      keepaliveSeconds: 30,
      protocolVersion: 4,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      connectTimeoutMs: 2000,
      ...opts,
    },
    testLogger(),
  );
  links.push(l);
  return l;
}

const online = (l: MqttLink): Promise<void> =>
  l.online ? Promise.resolve() : new Promise((resolve) => l.once("online", () => resolve()));

/** Waits until the link has failed `n` connection attempts (it is in backoff each time). */
async function failedAttempts(l: MqttLink, n: number): Promise<void> {
  let seen = 0;
  const end = Date.now() + 10_000;
  while (seen < n) {
    if (Date.now() > end) throw new Error("timed out waiting for failed attempts");
    if (l.health().state === "backoff") {
      seen++;
      while (l.health().state === "backoff" && Date.now() < end)
        await new Promise((r) => setTimeout(r, 5));
    } else await new Promise((r) => setTimeout(r, 5));
  }
}

describe("MqttLink", () => {
  it("publishes and receives at QoS 1 through the local cloud service's broker", async () => {
    const cloud = await startTestCloud();
    const l = link({ url: cloud.mqttUrl });
    const got = new Promise<[string, string]>((resolve) =>
      l.on("message", (t, p) => resolve([t, p.toString()])),
    );
    l.start();
    await online(l);
    await l.subscribe(["t/echo"]);
    const peer = await connectTestClient(cloud.mqttUrl);
    await peer.publish("t/echo", { hello: 1 });
    expect(await got).toEqual(["t/echo", '{"hello":1}']);
  });

  it("reconnects with backoff when the broker goes away and comes back", async () => {
    const cloud = await startTestCloud();
    const port = Number(new URL(cloud.mqttUrl).port);
    const l = link({ url: cloud.mqttUrl });
    let onlines = 0;
    l.on("online", () => onlines++);
    const offline = new Promise<string>((resolve) => l.once("offline", resolve));
    l.start();
    await online(l);
    await cloud.close();
    expect(await offline).toBeTypeOf("string");
    await failedAttempts(l, 2);
    await startTestCloud({ mqttPort: port });
    await online(l);
    expect(onlines).toBe(2);
    expect(l.health().connects).toBe(2);
  });

  it("logs in with Alibaba-signed credentials from the cloud config, and is refused with a wrong secret", async () => {
    const cloud = await startTestCloud({
      deviceSecrets: [{ productKey: "a1Gateway", deviceName: "edge-01", deviceSecret: "s3cret" }],
    });
    const options = (secret: string) =>
      linkOptions(
        gatewayConfigSchema.shape.cloud.unwrap().parse({
          url: cloud.mqttUrl,
          productKey: "a1Gateway",
          deviceName: "edge-01",
          deviceSecret: secret,
          reconnect: { min: 20, max: 200 },
        }),
        ".",
      );
    const good = options("s3cret");
    expect(good.clientId).toMatch(
      /^a1Gateway\.edge-01\|securemode=3,signmethod=hmacsha256,timestamp=\d+\|$/,
    );
    expect(good.username).toBe("edge-01&a1Gateway");
    const ok = link(good);
    ok.start();
    await online(ok);
    const bad = link(options("wrong"));
    bad.start();
    await failedAttempts(bad, 2);
    expect(bad.online).toBe(false);
  });

  describe("over TLS", () => {
    let dir: string;
    let server: Server;
    let broker: Aedes;
    let url: string;
    let ca: Buffer;
    beforeAll(async () => {
      dir = await makeCertificates();
      ca = await readFile(path.join(dir, "ca.pem"));
      broker = await Aedes.createBroker();
      server = createTlsServer(
        {
          key: await readFile(path.join(dir, "server.key")),
          cert: await readFile(path.join(dir, "server.pem")),
        },
        broker.handle,
      );
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      url = `mqtts://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    });

    it("verifies the broker's certificate by default and connects with the configured CA", async () => {
      const unverified = link({ url, tls: { rejectUnauthorized: true } });
      unverified.start();
      await failedAttempts(unverified, 2);
      expect(unverified.online).toBe(false);
      const verified = link({ url, tls: { rejectUnauthorized: true, ca } });
      verified.start();
      await online(verified);
    });

    it("reads the CA file named in the cloud config, relative to the config file", async () => {
      const options = linkOptions(
        gatewayConfigSchema.shape.cloud.unwrap().parse({
          url,
          productKey: "pk",
          deviceName: "dn",
          tls: { ca: "ca.pem" },
        }),
        dir,
      );
      expect(options.tls).toMatchObject({ rejectUnauthorized: true, ca });
      const l = link(options);
      l.start();
      await online(l);
    });
  });

  describeWithMosquitto("with mosquitto", (broker) => {
    it("speaks MQTT 5 when configured to", async () => {
      const l = link({ url: broker().url, protocolVersion: 5 });
      const got = new Promise<string>((resolve) =>
        l.on("message", (_t, p) => resolve(p.toString())),
      );
      l.start();
      await online(l);
      await l.subscribe(["t/v5"]);
      await l.publish("t/v5", "five");
      expect(await got).toBe("five");
      // mosquitto logs each client's protocol level: p5 is MQTT 5.
      expect(broker().output()).toMatch(/as test-[0-9a-f]+ \(p5,/);
    });
  });
});
