import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type Browser, type Locator, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Service } from "../../src/daemon/service.js";
import type { RunningCloudService } from "../../src/sim/cloud/index.js";
import { startSimulator, type RunningSimulator } from "../../src/sim/modbus/index.js";
import { closeCloudTestResources, startTestCloud } from "../helpers/cloud.js";
import { freePort } from "../helpers/ports.js";
import { serveSite } from "../helpers/site.js";

/**
 * The console in a real browser (Debian's chromium, driven by playwright-core) against a running
 * daemon over the Modbus simulator: the token form, the device list, a point changing on the
 * page after the simulator changes it, setting a point and seeing the read-back, a refused
 * value's reason, the event stream lost and found again, and axe-core's accessibility check.
 */

const root = path.resolve(import.meta.dirname, "../..");
const TOKEN = "console-token-0123456789";
const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));

const running: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop().catch(() => undefined);
});

let browser: Browser | undefined;
beforeAll(async () => {
  if (CHROMIUM)
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});
afterAll(async () => {
  await browser?.close();
});

interface Plant {
  sim: RunningSimulator;
  url: string;
  service: Service;
  cloud: RunningCloudService;
  mappingFile: string;
  mapping: string;
}

async function plant(): Promise<Plant> {
  const sim = await startSimulator({ port: 0 });
  running.push(() => sim.close());
  sim.sim.profile?.stop();
  const cloud = await startTestCloud();
  running.push(() => closeCloudTestResources());
  const dir = await mkdtemp(path.join(tmpdir(), "sg-console-"));
  await mkdir(path.join(dir, "mappings"));
  const mapping = await readFile(path.join(root, "mappings/boiler-01.yaml"), "utf8");
  const mappingFile = path.join(dir, "mappings", "boiler-01.yaml");
  await writeFile(mappingFile, mapping);
  const configFile = path.join(dir, "gateway.yaml");
  await writeFile(
    configFile,
    `version: 1
gateway: { name: edge-console, dataDir: ./data }
sources:
  plc1: { protocol: modbus-tcp, host: 127.0.0.1, port: ${sim.port}, timeout: 1s }
cloud: { url: "${cloud.mqttUrl}", productKey: a1Gateway, deviceName: edge-console }
api: { listen: "127.0.0.1:${await freePort()}", token: ${TOKEN} }
mappings: ./mappings
`,
  );
  const { service, url } = await serveSite(configFile, running);
  return { sim, service, cloud, mappingFile, mapping, url };
}

async function page(url: string): Promise<Page> {
  if (!browser) throw new Error("no browser");
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  running.push(() => context.close());
  const p = await context.newPage();
  await p.goto(url);
  await p.getByLabel("API token").fill(TOKEN);
  await p.getByRole("button", { name: "Open" }).click();
  return p;
}

/**
 * `npm run screenshots` sets SHADOWGATE_SCREENSHOTS to docs/console: the views these tests drive
 * are saved there as the README shows them. Otherwise this does nothing.
 */
const SHOTS = process.env.SHADOWGATE_SCREENSHOTS;
async function shot(p: Page, name: string, part?: Locator): Promise<void> {
  if (!SHOTS) return;
  await mkdir(path.resolve(root, SHOTS), { recursive: true });
  const file = path.resolve(root, SHOTS, `${name}.png`);
  await (part ? part.screenshot({ path: file }) : p.screenshot({ path: file, fullPage: true }));
}

const valueOf = (p: Page, point: string) => p.locator(`tr[data-point="${point}"] [data-value]`);
const qualityOf = (p: Page, point: string) => p.locator(`tr[data-point="${point}"] [data-quality]`);

// Skipped only on a developer machine without chromium; under CI its absence is a failure.
describe.skipIf(CHROMIUM === undefined && process.env.CI !== "true")("the web console", () => {
  it("lists the devices, shows a point change live and sets a point with its read-back", async () => {
    const { sim, url } = await plant();
    const p = await page(url);
    await expect
      .poll(() => p.locator('tr[data-device="boiler-01"]').textContent())
      .toMatch(/plc1 online.*synced/);
    await shot(p, "devices");
    await p.getByRole("link", { name: "boiler-01" }).click();
    await expect.poll(() => valueOf(p, "targetTemperature").textContent()).toBe("60");
    await expect.poll(() => p.locator("[data-stream]").getAttribute("data-stream")).toBe("live");
    // A change in the PLC reaches the page through the event stream.
    sim.sim.unit(1).holding[9] = 725;
    await expect.poll(() => valueOf(p, "targetTemperature").textContent()).toBe("72.5");
    // Set a point from its details: confirmed, written, read back.
    await p.getByRole("button", { name: "Details of targetTemperature" }).click();
    p.once("dialog", (d) => void d.accept());
    await p.getByLabel("New value for targetTemperature").fill("80");
    await p.getByRole("button", { name: "Set" }).click();
    await expect
      .poll(() => p.getByRole("status").filter({ hasText: "read back" }).textContent())
      .toContain("applied, read back 80");
    expect(sim.sim.unit(1).holding[9]).toBe(800);
    await shot(p, "device");
    // The guard's refusal, verbatim; nothing written.
    p.once("dialog", (d) => void d.accept());
    await p.getByLabel("New value for targetTemperature").fill("500");
    await p.getByRole("button", { name: "Set" }).click();
    await expect
      .poll(() => p.locator("form span.bad").first().textContent())
      .toContain("500 is above the maximum 120 of targetTemperature");
    expect(sim.sim.unit(1).holding[9]).toBe(800);
    // A read-only point has no form.
    await p.getByRole("button", { name: "Details of temperature" }).click();
    expect(await p.getByLabel("New value for temperature").count()).toBe(0);
  });

  it("shows a point's raw words under each byte order, its history, a bad point's reason and a PLC that is gone", async () => {
    const { sim, url } = await plant();
    const p = await page(url);
    await p.getByRole("link", { name: "boiler-01" }).click();
    await expect.poll(() => valueOf(p, "targetTemperature").textContent()).toBe("60");
    sim.sim.unit(1).holding[9] = 0x0102;
    await expect.poll(() => valueOf(p, "targetTemperature").textContent()).toBe("25.8");
    await p.getByRole("button", { name: "Details of targetTemperature" }).click();
    await expect.poll(() => p.locator("[data-words]").textContent()).toBe("0x0102");
    expect(await p.locator('tr[data-order="AB"]').textContent()).toContain("25.8");
    expect(await p.locator('tr[data-order="AB"]').textContent()).toContain("configured");
    expect(await p.locator('tr[data-order="BA"]').textContent()).toContain("51.3");
    // The history from the store: 60 first, then 25.8.
    await expect
      .poll(() => p.locator(".spark figcaption").textContent())
      .toMatch(/2 values, 25\.8 to 60, last 25\.8/);
    await shot(p, "point-details", p.locator('tr[id="detail-targetTemperature"]'));
    // Registers that stop answering: the point's last value goes stale, with the PLC's reason.
    sim.sim.unit(1).addHole({ table: "holding", from: 9, to: 9 });
    await expect.poll(() => qualityOf(p, "targetTemperature").textContent()).toMatch(/^stale: .+/);
    expect(await qualityOf(p, "targetTemperature").textContent()).toMatch(/illegal data address/i);
    // Reading its words now fails the same way: the device's reason, as the API gives it.
    await p.getByRole("button", { name: "Read again" }).click();
    await expect
      .poll(() => p.getByRole("alert").textContent())
      .toMatch(/Raw words: .*illegal data address/);
    // A PLC that is gone: the page says the connection is lost, and a read says why it failed.
    await sim.close();
    await expect.poll(() => p.locator("[data-connection]").textContent()).not.toBe("online");
    await p.getByRole("button", { name: "Read again" }).click();
    await expect
      .poll(() => p.getByRole("alert").textContent())
      .toMatch(/^Raw words: boiler-01 targetTemperature: .+/);
  });

  it("shows the edge shadow beside the cloud's, with a desired value and its outcome", async () => {
    const { cloud, url, sim } = await plant();
    const p = await page(url);
    await p.getByRole("link", { name: "boiler-01" }).click();
    await expect
      .poll(() => p.locator('tr[data-compare="targetTemperature"]').textContent())
      .toMatch(/targetTemperature6060same/);
    expect(await p.getByText("The cloud holds every reported value.").count()).toBe(1);
    // A desired value set in the cloud runs once; its outcome shows in both shadows.
    await cloud.service.updateDesired(
      "a1Boiler",
      "boiler-01",
      { method: "update", state: { desired: { targetTemperature: 65 } } },
      { delta: true },
    );
    await expect.poll(() => sim.sim.unit(1).holding[9]).toBe(650);
    await p.getByRole("button", { name: "Read the cloud shadow again" }).click();
    await expect
      .poll(() => p.getByRole("table", { name: "_commands" }).textContent())
      .toMatch(/targetTemperatureapplied 65cloud/);
    await expect
      .poll(() => p.locator('tr[data-compare="targetTemperature"]').textContent())
      .toMatch(/targetTemperature6565same/);
    await shot(p, "edge-and-cloud", p.locator('section[aria-labelledby="cloud-h"]'));
  });

  it("shows the last reload: refused with every problem as file:line:col, then applied", async () => {
    const { url, mappingFile, mapping } = await plant();
    const p = await page(url);
    await p.getByText("No reload since the gateway started.").waitFor();
    await writeFile(mappingFile, mapping.replace("type: float32", "type: float99"));
    await p.getByRole("button", { name: "Reload the config now" }).click();
    await expect
      .poll(() => p.locator('[data-reload="refused"]').textContent())
      .toMatch(/Refused .*\(api\).*1 problem/);
    expect(await p.locator(".problems li").allTextContents()).toEqual([
      expect.stringMatching(/boiler-01\.yaml:\d+:\d+ points\.temperature\.type: .+/),
    ]);
    await shot(p, "reload-refused");
    await writeFile(mappingFile, mapping);
    await p.getByRole("button", { name: "Reload the config now" }).click();
    await expect
      .poll(() => p.locator('[data-reload="applied"]').textContent())
      .toMatch(/Applied .*\(api\).*added none, changed none, removed none/);
  });

  it("says when the event stream is lost and reconnects", async () => {
    const { url, service } = await plant();
    const p = await page(url);
    await expect.poll(() => p.locator("[data-stream]").getAttribute("data-stream")).toBe("live");
    // Restarting the API ends its event streams; the page says so, then connects again.
    const api = service.api;
    expect(api).toBeDefined();
    await api?.stop();
    await expect
      .poll(() => p.locator("[data-stream]").getAttribute("data-stream"))
      .toBe("reconnecting");
    await api?.start();
    await expect.poll(() => p.locator("[data-stream]").getAttribute("data-stream")).toBe("live");
  });

  it("passes axe-core's accessibility check on the device list and a device", async () => {
    const { url } = await plant();
    const p = await page(url);
    await p.getByRole("link", { name: "boiler-01" }).waitFor();
    const axe = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
    const check = async () => {
      await p.addScriptTag({ path: axe });
      return p.evaluate(async () => {
        const r = await (
          globalThis as unknown as {
            axe: { run: () => Promise<{ violations: Array<{ id: string; help: string }> }> };
          }
        ).axe.run();
        return r.violations.map((v) => `${v.id}: ${v.help}`);
      });
    };
    expect(await check()).toEqual([]);
    await p.getByRole("link", { name: "boiler-01" }).click();
    await valueOf(p, "targetTemperature").waitFor();
    // With a point's details open (raw words, history, its form) and the cloud comparison in.
    await p.getByRole("button", { name: "Details of targetTemperature" }).click();
    await p.locator("[data-words]").waitFor();
    await p.locator(".spark").waitFor();
    await p.locator('tr[data-compare="targetTemperature"]').waitFor();
    expect(await check()).toEqual([]);
    // Readable on a phone: the narrow layout drops the wide columns.
    await p.setViewportSize({ width: 390, height: 844 });
    await shot(p, "phone");
  });
});
