/**
 * `shadowgate install` and `uninstall` through the built CLI, always with --root on a temp
 * folder (the tests may run as root: a real install would change the machine): --print changes
 * nothing, the staged tree has its files and modes, an existing config is never overwritten and
 * its heap cap goes into the unit, and systemd-analyze verifies the unit.
 */
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { unitText } from "../../src/cli/systemd-unit.js";
import { findExecutable } from "../../src/core/executables.js";
import { runCli } from "../helpers/run.js";

const root = path.resolve(import.meta.dirname, "../..");
const version = (
  JSON.parse(await readFile(path.join(root, "package.json"), "utf8")) as {
    version: string;
  }
).version;

const cli = (args: string[]) => runCli(args);

const stage = () => mkdtemp(path.join(tmpdir(), "sg-install-"));
const mode = (file: string) => (statSync(file).mode & 0o777).toString(8);
/**
 * Where the unit runs the package from on the target box. Not this checkout: it may lie under
 * /home, which install refuses (ProtectHome=yes). The verify test links it to this checkout.
 */
const prefix = "/opt/shadowgate";

describe("shadowgate install --root", () => {
  it("--print prints the unit and changes nothing", async () => {
    const dir = await stage();
    const r = await cli(["install", "--root", dir, "--prefix", prefix, "--print"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      unitText({
        node: process.execPath,
        prefix,
        configDir: "/etc/shadowgate",
        dataDir: "/var/lib/shadowgate",
        user: "shadowgate",
        heapMb: 128,
        version,
      }),
    );
    expect(await readdir(dir)).toEqual([]);
  });

  it("stages the folders, the example config, the env file and the unit, with their modes", async () => {
    const dir = await stage();
    const r = await cli(["install", "--root", dir, "--prefix", prefix]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("skipped: creating the system user shadowgate (--root");
    expect(r.stdout).toContain("systemctl enable --now shadowgate.service");

    const at = (p: string) => path.join(dir, p);
    expect(mode(at("etc/shadowgate"))).toBe("750");
    expect(mode(at("var/lib/shadowgate"))).toBe("750");
    expect(mode(at("etc/shadowgate/env"))).toBe("600");
    expect(mode(at("etc/shadowgate/gateway.yaml"))).toBe("640");
    expect(mode(at("etc/shadowgate/mappings/boiler-01.yaml"))).toBe("640");
    expect(mode(at("etc/systemd/system/shadowgate.service"))).toBe("644");
    // The parents of a folder keep the usual mode, or the user could not reach its data.
    expect(mode(at("var/lib"))).toBe("755");

    const config = await readFile(at("etc/shadowgate/gateway.yaml"), "utf8");
    expect(config).toMatch(/^ {2}dataDir: \/var\/lib\/shadowgate$/m);
    expect(config).toMatch(/^mappings: mappings$/m);
    expect(await readFile(at("etc/shadowgate/mappings/boiler-01.yaml"), "utf8")).toBe(
      await readFile(path.join(root, "mappings/boiler-01.yaml"), "utf8"),
    );
    // The staged example is a valid config as it stands.
    const v = await cli(["validate", "-c", at("etc/shadowgate/gateway.yaml")]);
    expect(v).toMatchObject({ code: 0, stdout: "ok: 1 source(s), 1 device(s), 7 point(s)\n" });

    const unit = await readFile(at("etc/systemd/system/shadowgate.service"), "utf8");
    expect(unit).toContain(
      `ExecStart=${process.execPath} --max-old-space-size=128 --max-semi-space-size=4 ${prefix}/dist/cli/main.js run -c /etc/shadowgate/gateway.yaml\n`,
    );
  });

  it("never overwrites an existing config, env file or mapping, and takes its heap cap", async () => {
    const dir = await stage();
    const at = (p: string) => path.join(dir, p);
    await mkdir(at("etc/shadowgate/mappings"), { recursive: true });
    const mine = "version: 1\ngateway:\n  memory: { heapMb: 256 }\nsources: {}\nmappings: m\n";
    await writeFile(at("etc/shadowgate/gateway.yaml"), mine);
    await writeFile(at("etc/shadowgate/env"), "DEVICE_SECRET=mine\n", { mode: 0o600 });

    const r = await cli(["install", "--root", dir, "--prefix", prefix]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("kept /etc/shadowgate/gateway.yaml (exists; never overwritten)");
    expect(r.stdout).toContain("kept /etc/shadowgate/env (exists)");
    expect(await readFile(at("etc/shadowgate/gateway.yaml"), "utf8")).toBe(mine);
    expect(await readFile(at("etc/shadowgate/env"), "utf8")).toBe("DEVICE_SECRET=mine\n");
    // With a config of one's own, the example mappings are not added.
    expect(await readdir(at("etc/shadowgate/mappings"))).toEqual([]);
    const unit = await readFile(at("etc/systemd/system/shadowgate.service"), "utf8");
    expect(unit).toContain(" --max-old-space-size=256 ");

    // Installing again keeps everything, and says the unit is unchanged.
    const again = await cli(["install", "--root", dir, "--prefix", prefix]);
    expect(again.stdout).toContain("kept /etc/systemd/system/shadowgate.service");
    expect(await readFile(at("etc/shadowgate/gateway.yaml"), "utf8")).toBe(mine);
  });

  it("refuses a heap cap the config schema refuses, and a package under /home", async () => {
    const dir = await stage();
    await mkdir(path.join(dir, "etc/shadowgate"), { recursive: true });
    await writeFile(
      path.join(dir, "etc/shadowgate/gateway.yaml"),
      "version: 1\ngateway:\n  memory: { heapMb: 16 }\n",
    );
    const r = await cli(["install", "--root", dir, "--prefix", prefix, "--print"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^shadowgate: SG_INSTALL .*gateway\.yaml: gateway\.memory: /);
    expect(r.stdout).toBe("");

    const home = await cli(["install", "--root", dir, "--prefix", "/home/me/shadowgate"]);
    expect(home.code).toBe(1);
    expect(home.stderr).toContain("ProtectHome=yes");
  });

  it("uninstall removes the unit and keeps config and data unless --purge", async () => {
    const dir = await stage();
    const at = (p: string) => path.join(dir, p);
    expect((await cli(["install", "--root", dir, "--prefix", prefix])).code).toBe(0);

    const r = await cli(["uninstall", "--root", dir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("removed /etc/systemd/system/shadowgate.service");
    expect(r.stdout).toMatch(/kept \/etc\/shadowgate .* and \/var\/lib\/shadowgate /);
    expect(existsSync(at("etc/systemd/system/shadowgate.service"))).toBe(false);
    expect(existsSync(at("etc/shadowgate/gateway.yaml"))).toBe(true);
    expect(existsSync(at("var/lib/shadowgate"))).toBe(true);

    const purge = await cli(["uninstall", "--root", dir, "--purge"]);
    expect(purge.code).toBe(0);
    expect(purge.stdout).toContain("is not there: nothing to stop or remove");
    expect(existsSync(at("etc/shadowgate"))).toBe(false);
    expect(existsSync(at("var/lib/shadowgate"))).toBe(false);
  });
});

const systemdAnalyze = findExecutable("systemd-analyze", ["/usr/bin/systemd-analyze"]);

// Skipped only on a developer machine without it; under CI its absence is a failure.
describe.skipIf(systemdAnalyze === undefined && process.env.CI !== "true")("the unit", () => {
  it("passes systemd-analyze verify", async () => {
    if (systemdAnalyze === undefined) throw new Error("CI=true and systemd-analyze is missing");
    const dir = await stage();
    expect((await cli(["install", "--root", dir, "--prefix", prefix])).code).toBe(0);
    const unit = path.join(dir, "etc/systemd/system/shadowgate.service");
    // The package in the staged tree is this checkout, built.
    await mkdir(path.join(dir, "opt"));
    await symlink(root, path.join(dir, prefix));
    // Verified by its path: `--root=` wants a whole systemd tree (sysinit.target and the rest)
    // in the root. verify checks that ExecStart's and ExecReload's binaries exist on this
    // machine, which they do (this node, /bin/kill); the script node runs is checked here.
    const execStart = /^ExecStart=(\S+) (?:--\S+ )+(\S+) /m.exec(await readFile(unit, "utf8"));
    expect(execStart?.[1]).toBe(process.execPath);
    expect(execStart?.[2]).toBe(`${prefix}/dist/cli/main.js`);
    expect(existsSync(path.join(dir, execStart?.[2] ?? "-"))).toBe(true);
    const r = spawnSync(systemdAnalyze, ["verify", unit], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);

    // And verify does catch a broken unit, so its silence above means something.
    const broken = path.join(dir, "shadowgate.service");
    await writeFile(broken, (await readFile(unit, "utf8")).replace(process.execPath, "/no/node"));
    const bad = spawnSync(systemdAnalyze, ["verify", broken], { encoding: "utf8" });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain("/no/node");
  });
});
