import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { silentLogger } from "../../src/core/logger.js";
import { Service } from "../../src/daemon/service.js";
import { startSimulator, type RunningSimulator } from "../../src/sim/modbus/index.js";
import { freePort } from "../helpers/ports.js";

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

async function plant(): Promise<{ sim: RunningSimulator; url: string; service: Service }> {
  const sim = await startSimulator({ port: 0 });
  running.push(() => sim.close());
  sim.sim.profile?.stop();
  const dir = await mkdtemp(path.join(tmpdir(), "sg-console-"));
  await mkdir(path.join(dir, "mappings"));
  const mapping = await readFile(path.join(root, "mappings/boiler-01.yaml"), "utf8");
  await writeFile(path.join(dir, "mappings", "boiler-01.yaml"), mapping);
  const configFile = path.join(dir, "gateway.yaml");
  await writeFile(
    configFile,
    `version: 1
gateway: { name: edge-console, dataDir: ./data }
sources:
  plc1: { protocol: modbus-tcp, host: 127.0.0.1, port: ${sim.port}, timeout: 1s }
api: { listen: "127.0.0.1:${await freePort()}", token: ${TOKEN} }
mappings: ./mappings
`,
  );
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const service = new Service(configFile, loaded.config, silentLogger());
  await service.start();
  running.push(() => service.stop());
  const port = service.api?.address?.port;
  if (port === undefined) throw new Error("the API did not bind");
  return { sim, service, url: `http://127.0.0.1:${port}` };
}

async function page(url: string): Promise<Page> {
  if (!browser) throw new Error("no browser");
  const context = await browser.newContext();
  running.push(() => context.close());
  const p = await context.newPage();
  await p.goto(url);
  await p.getByLabel("API token").fill(TOKEN);
  await p.getByRole("button", { name: "Open" }).click();
  return p;
}

const valueOf = (p: Page, point: string) => p.locator(`tr[data-point="${point}"] td[data-value]`);

// Skipped only on a developer machine without chromium; under CI its absence is a failure.
describe.skipIf(CHROMIUM === undefined && process.env.CI !== "true")("the web console", () => {
  it("lists the devices, shows a point change live and sets a point with its read-back", async () => {
    const { sim, url } = await plant();
    const p = await page(url);
    await p.getByRole("link", { name: "boiler-01" }).click();
    await expect.poll(() => valueOf(p, "targetTemperature").textContent()).toBe("60");
    await expect.poll(() => p.locator("[data-stream]").getAttribute("data-stream")).toBe("live");
    // A change in the PLC reaches the page through the event stream.
    sim.sim.unit(1).holding[9] = 725;
    await expect.poll(() => valueOf(p, "targetTemperature").textContent()).toBe("72.5");
    // Set a point: confirmed, written, read back.
    p.once("dialog", (d) => void d.accept());
    await p.getByLabel("New value for targetTemperature").fill("80");
    await p
      .locator("form", { has: p.getByLabel("New value for targetTemperature") })
      .getByRole("button", { name: "Set" })
      .click();
    await expect
      .poll(() => p.getByRole("status").filter({ hasText: "read back" }).textContent())
      .toContain("applied, read back 80");
    expect(sim.sim.unit(1).holding[9]).toBe(800);
    // The guard's refusal, verbatim.
    p.once("dialog", (d) => void d.accept());
    await p.getByLabel("New value for targetTemperature").fill("500");
    await p
      .locator("form", { has: p.getByLabel("New value for targetTemperature") })
      .getByRole("button", { name: "Set" })
      .click();
    await expect
      .poll(() => p.locator("form span.bad").first().textContent())
      .toMatch(/above the maximum|max/);
    expect(sim.sim.unit(1).holding[9]).toBe(800);
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
    expect(await check()).toEqual([]);
  });
});
