/**
 * The unit `shadowgate install` writes (cli/systemd-unit.ts), read as systemd reads it: one
 * key=value a line per section. test/integration/install.test.ts runs systemd-analyze on it.
 */
import { describe, expect, it } from "vitest";
import {
  STOP_BOUND_S,
  unitProblems,
  unitText,
  type UnitOptions,
} from "../../../src/cli/systemd-unit.js";
import { STOP_TIMEOUT_MS } from "../../../src/daemon/gateway.js";

const options: UnitOptions = {
  node: "/usr/bin/node",
  prefix: "/usr/local/lib/node_modules/shadowgate",
  configDir: "/etc/shadowgate",
  dataDir: "/var/lib/shadowgate",
  user: "shadowgate",
  heapMb: 192,
  version: "0.1.0",
};

/** The unit's directives per section, comments and blank lines left out. */
function directives(text: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section: Record<string, string[]> | undefined;
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header?.[1]) {
      section = out[header[1]] = {};
      continue;
    }
    const eq = line.indexOf("=");
    if (!section || eq < 0) throw new Error(`not a directive: ${line}`);
    (section[line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
  }
  return out;
}

describe("unitText", () => {
  const unit = directives(unitText(options));
  const service = unit.Service ?? {};

  it("runs the package's CLI under node with the heap cap and the config", () => {
    expect(service.ExecStart).toEqual([
      "/usr/bin/node --max-old-space-size=192 --max-semi-space-size=4 /usr/local/lib/node_modules/shadowgate/dist/cli/main.js run -c /etc/shadowgate/gateway.yaml",
    ]);
    expect(service.ExecReload).toEqual(["/bin/kill -HUP $MAINPID"]);
  });

  it("is Type=notify with a watchdog, accepting notifications from node's children", () => {
    expect(service.Type).toEqual(["notify"]);
    expect(service.NotifyAccess).toEqual(["all"]);
    expect(service.WatchdogSec).toEqual(["30s"]);
    expect(service.Restart).toEqual(["on-failure"]);
    expect(service.RestartSec).toEqual(["5s"]);
  });

  it("runs as the user, with dialout for the serial ports, and secrets from the env file", () => {
    expect(service.User).toEqual(["shadowgate"]);
    expect(service.Group).toEqual(["shadowgate"]);
    expect(service.SupplementaryGroups).toEqual(["dialout"]);
    expect(service.EnvironmentFile).toEqual(["-/etc/shadowgate/env"]);
  });

  it("is sandboxed and may write only its data dir", () => {
    expect(service).toMatchObject({
      NoNewPrivileges: ["yes"],
      ProtectSystem: ["strict"],
      ProtectHome: ["yes"],
      PrivateTmp: ["yes"],
      ReadWritePaths: ["/var/lib/shadowgate"],
      StateDirectory: ["shadowgate"],
      StateDirectoryMode: ["0750"],
    });
    expect(service.PrivateDevices).toBeUndefined();
    expect(unit.Install?.WantedBy).toEqual(["multi-user.target"]);
  });

  it("gives a stop longer than the gateway's own bound of components x STOP_TIMEOUT_MS", () => {
    // store, sources, poller, cloud sync, and room for the local API: 5 components.
    expect(STOP_BOUND_S * 1000).toBeGreaterThan(5 * STOP_TIMEOUT_MS);
    expect(service.TimeoutStopSec).toEqual([`${STOP_BOUND_S}s`]);
  });

  it("uses StateDirectory only for a data dir directly under /var/lib", () => {
    const other = directives(unitText({ ...options, dataDir: "/srv/shadowgate/data" })).Service;
    expect(other?.StateDirectory).toBeUndefined();
    expect(other?.ReadWritePaths).toEqual(["/srv/shadowgate/data"]);
  });
});

describe("unitProblems", () => {
  it("accepts the defaults", () => {
    expect(unitProblems(options)).toEqual([]);
  });

  it("refuses paths a unit would split or expand, relative paths, odd users and tiny heaps", () => {
    const problems = unitProblems({
      ...options,
      prefix: "/opt/my gateway",
      configDir: "etc/shadowgate",
      dataDir: "/var/lib/sg%i",
      user: "Root;x",
      heapMb: 8,
    });
    expect(problems).toHaveLength(5);
    expect(problems[0]).toMatch(/^prefix "\/opt\/my gateway"/);
    expect(() => unitText({ ...options, dataDir: "/data/$HOME" })).toThrow(/data dir/);
  });
});
