#!/usr/bin/env node
import { createRequire } from "node:module";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { ExitCodes } from "../core/errors.js";
import { LOG_FORMATS, type LogFormat } from "../core/logger.js";
import { parseOverride, type Override } from "../config/override.js";
// Each command's module is loaded when it runs, so that `run` (the daemon, under its heap cap)
// never loads the simulators, the cloud service's broker or the installer.
import type { CloudCommandOptions } from "./cloud.js";
import type { ScanCommandOptions } from "./scan.js";
import type { InstallOptions } from "./install.js";
import type { SignOptions } from "./sign.js";
import type { SimModbusOptions } from "./sim.js";
import type { SimOpcuaOptions } from "./sim-opcua.js";

// `shadowgate read --json | head` closes the pipe early; that is not an error.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(ExitCodes.OK);
  throw e;
});

/** Commander collector for a repeatable option. */
const collect = (value: string, previous: string[]): string[] => [...previous, value];

const { version } = createRequire(import.meta.url)("../../package.json") as { version: string };

const EXIT_CODES_HELP = `
Exit codes:
  0   success
  1   runtime failure (a source could not be read, a port could not be opened)
  2   configuration or mapping error; nothing was started
  64  bad command line`;

const program = new Command()
  .name("shadowgate")
  .description("Edge gateway: Modbus sources mapped by YAML to a JSON device shadow")
  .version(version)
  .addHelpText("after", EXIT_CODES_HELP)
  .exitOverride()
  .showHelpAfterError();

const configOption = () =>
  new Option("-c, --config <file>", "gateway config file").default("config/gateway.yaml");

/** `--override key.path=value`, repeatable: a config key set as if the file said it. */
const overrideOption = () =>
  new Option(
    "--override <key=value>",
    "set a key of the gateway config, e.g. sources.plc1.port=5020 (repeatable; validated like the file)",
  )
    .argParser((text: string, previous: Override[] = []) => {
      const o = parseOverride(text);
      if (typeof o === "string") throw new InvalidArgumentError(o);
      return [...previous, o];
    })
    .default([]);

program
  .command("validate")
  .description("check the gateway config and every mapping file; print every problem at once")
  .addOption(configOption())
  .addOption(overrideOption())
  .action(async (o: { config: string; override: Override[] }) =>
    exit(await (await import("./validate.js")).validateCommand(o)),
  );

program
  .command("read")
  .description("poll every device once and print its reported state")
  .addOption(configOption())
  .addOption(overrideOption())
  .option("-d, --device <name>", "only this device (deviceName)")
  .option("--json", "print one JSON object keyed by deviceName")
  .option("--raw <point>", "print the point's raw words and its value under every byte order")
  .action(
    async (o: {
      config: string;
      override: Override[];
      device?: string;
      json?: boolean;
      raw?: string;
    }) => exit(await (await import("./read.js")).readCommand(o)),
  );

program
  .command("scan")
  .description(
    "find the Modbus units that answer and their readable registers; print a draft mapping per unit",
  )
  .option("--host <host>", "Modbus TCP device or gateway")
  .option("--port <n>", "Modbus TCP port", "502")
  .option("--rtu <path>", "serial device of an RS-485 line")
  .option("--baud <n>", "the line's baud rate (with --rtu)", "9600")
  .option("--parity <p>", "none, even or odd (with --rtu)", "even")
  .option("--stop-bits <n>", "1 or 2 (with --rtu)", "1")
  .option("--units <list>", "unit ids to try, as 1-247 or 1,3,5-9", "1-247")
  .option("--registers <range>", "register addresses (0-based) to probe", "0-9999")
  .option("--timeout <ms>", "how long a unit may take to answer", "300")
  .option("--max-requests <n>", "requests per unit at most", "2000")
  .option("--source <id>", "the source id the drafts name", "plc1")
  .option("--out <dir>", "write one draft mapping file per unit there")
  .option("--json", "print what was found as JSON")
  .action(async (o: ScanCommandOptions) => exit(await (await import("./scan.js")).scanCommand(o)));

program
  .command("history")
  .description("print the reports recorded for a device (sent, or queued while the uplink is down)")
  .addOption(configOption())
  .addOption(overrideOption())
  .requiredOption("-d, --device <name>", "the device (deviceName)")
  .option("--since <when>", "a time (2026-11-26T08:00Z) or a duration back from now (30m, 2h, 7d)")
  .option("--point <name>", "only this point's values (dotted name)")
  .option("--json", "JSON lines")
  .action(
    async (o: {
      config: string;
      override: Override[];
      device: string;
      since?: string;
      point?: string;
      json?: boolean;
    }) => exit(await (await import("./history.js")).historyCommand(o)),
  );

program
  .command("run")
  .description("run the gateway daemon until SIGTERM or SIGINT; SIGHUP reloads the config")
  .addOption(configOption())
  .addOption(overrideOption())
  .addOption(
    new Option("--log-format <format>", "json (for journald and tools) or pretty (for people)")
      .choices(LOG_FORMATS)
      .default("json"),
  )
  .option("--watch", "reload when the config file or a mapping file changes")
  .action(
    async (o: { config: string; override: Override[]; logFormat: LogFormat; watch?: boolean }) =>
      exit(await (await import("./run.js")).runCommand(o)),
  );

const installDirs = (c: Command): Command =>
  c
    .option("--config-dir <dir>", "where gateway.yaml, mappings/ and env are", "/etc/shadowgate")
    .option("--data-dir <dir>", "the gateway's dataDir (outbox, history)", "/var/lib/shadowgate")
    .option("--user <name>", "the system user the service runs as", "shadowgate")
    .option(
      "--root <dir>",
      "write under this folder instead of / (a staging tree; no user, no systemctl)",
    );

installDirs(
  program
    .command("install")
    .description(
      "run the gateway as a systemd service: user, folders, example config (never overwritten), unit (needs root unless --root or --print)",
    )
    .option("--prefix <dir>", "the installed package the unit runs (default: this one)")
    .option("--node <path>", "the node binary the unit runs (default: this one)")
    .option("--print", "print the unit and change nothing"),
).action(async (o: InstallOptions) => exit(await (await import("./install.js")).installCommand(o)));

installDirs(
  program
    .command("uninstall")
    .description("stop, disable and remove the service unit; config and data stay unless --purge")
    .option("--purge", "also remove the config dir and the data dir"),
).action(
  async (o: { user: string; configDir: string; dataDir: string; root?: string; purge?: boolean }) =>
    exit(await (await import("./install.js")).uninstallCommand(o)),
);

program
  .command("demo")
  .description("a simulated PLC and the gateway in one process, showing the live shadow")
  .option("--once", "print the shadow once after the first poll and exit")
  .option("--dialect <name>", "the cloud: alibaba (default) or aws")
  .action(async (o: { once?: boolean; dialect?: string }) =>
    exit(await (await import("./demo.js")).demoCommand(o)),
  );

program
  .command("test")
  .description(
    "run a scenario: the config against simulators of its own mappings and the local cloud, checks in order",
  )
  .argument("<scenario>", "scenario YAML (config, values, steps)")
  .option("--junit <file>", "also write a JUnit XML report")
  .option("--keep", "keep the gateway's log and data folder when every check held too")
  .addOption(overrideOption())
  .action(async (scenario: string, o: { junit?: string; keep?: boolean; override: Override[] }) =>
    exit(await (await import("./test-scenario.js")).testScenarioCommand({ ...o, scenario })),
  );

const sim = program
  .command("sim")
  .description("simulators for tests and demos; --from-config simulates a config's own sources")
  .option(
    "--from-config <file>",
    "one simulator per source of this gateway config, every mapped point at its address and type",
  )
  .option("--values <file>", "YAML of device: { point: value } in engineering units")
  .addOption(
    new Option(
      "--line <source=path>",
      "serve this RTU source on a serial device (an RS-485 adapter wired to the gateway's line) instead of a pty pair (repeatable)",
    ).argParser((text: string, previous: Record<string, string> = {}) => {
      const m = /^([^=]+)=(.+)$/.exec(text);
      if (!m?.[1] || !m[2])
        throw new InvalidArgumentError(`write SOURCE=PATH, e.g. line1=/dev/ttyUSB1`);
      return { ...previous, [m[1]]: m[2] };
    }),
  )
  .addOption(overrideOption())
  .action(
    async (o: {
      fromConfig?: string;
      values?: string;
      line?: Record<string, string>;
      override: Override[];
    }) => {
      if (o.fromConfig === undefined) return sim.help({ error: true });
      exit(
        await (
          await import("./sim-config.js")
        ).simFromConfigCommand({ ...o, fromConfig: o.fromConfig }),
      );
    },
  );

sim
  .command("modbus")
  .description("a Modbus PLC simulator on TCP, on a serial line (RTU), or both")
  .option("-p, --port <n>", "TCP port (0 picks a free one; default 5020, none with --rtu alone)")
  .option("--host <addr>", "address to bind", "127.0.0.1")
  .option("--profile <file>", "YAML profile: units, points, holes, dynamics (default: the boiler)")
  .option("--rtu <path>", "serve Modbus RTU on this serial device (a real port or a pty end)")
  .option("--baud <n>", "line speed: answers take as long as on a real line (default: at once)")
  .option("--parity <p>", "none, even or odd (default none)")
  .option("--data-bits <n>", "7 or 8 (default 8)")
  .option("--stop-bits <n>", "1 or 2 (default 1)")
  .action(async (o: SimModbusOptions) =>
    exit(await (await import("./sim.js")).simModbusCommand(o)),
  );

sim
  .command("opcua")
  .description("an OPC UA server simulator (node-opcua): the boiler, or a profile's variables")
  .option("-p, --port <n>", "TCP port (0 picks a free one)", "4840")
  .option("--host <addr>", "address to bind and to name in the endpoint URL", "127.0.0.1")
  .option("--profile <file>", "YAML profile: objects, variables, dynamics (default: the boiler)")
  .option("--extra-variables <n>", "add N Doubles ns=1;s=Bench.V<i> for benchmarks", "0")
  .option("--pki <dir>", "PKI folder to keep the server certificate in (default: a temp folder)")
  .action(async (o: SimOpcuaOptions) =>
    exit(await (await import("./sim-opcua.js")).simOpcuaCommand(o)),
  );

program
  .command("cloud")
  .description(
    "the local cloud shadow service (Alibaba's shadow protocol, or AWS IoT's): MQTT broker + HTTP API",
  )
  .option("--dialect <name>", "alibaba or aws", "alibaba")
  .option("--mqtt-port <n>", "embedded broker port (0 picks a free one)", "1883")
  .option("--http-port <n>", "HTTP API port (0 picks a free one)", "8080")
  .option("--broker <url>", "use an external broker (mqtt://host:port) instead of the embedded one")
  .option("--db <file>", "SQLite file for the shadows (default: in memory)")
  .option(
    "--device-secret <pk/dn=secret>",
    "a device's secret, gateway or sub-device (repeatable): checks CONNECTs to the embedded broker and sub-device signs",
    collect,
    [],
  )
  .option("--secrets <file>", 'YAML or JSON file of "pk/dn": secret, as --device-secret')
  .option(
    "--strict-sessions",
    "a shadow request needs its device's own connection or a sub-device login (520 on /ext/error otherwise)",
  )
  .option("--tls-cert <file>", "aws: serve MQTT over TLS with this certificate (PEM)")
  .option("--tls-key <file>", "aws: the certificate's private key (PEM)")
  .option("--tls-ca <file>", "aws: take only clients whose certificate this CA signed (mutual TLS)")
  .option(
    "--reply-delay <ms>",
    "aws: answer requests after this long (the 11th in flight gets 429)",
  )
  .action(async (o: CloudCommandOptions) =>
    exit(await (await import("./cloud.js")).cloudCommand(o)),
  );

program
  .command("schemas")
  .description("write the JSON Schemas of the config and mapping files (for editors)")
  .option("-o, --out <dir>", "output folder", "config/schemas")
  .action(async (o: { out: string }) =>
    exit(await (await import("./schemas.js")).schemasCommand(o)),
  );

program
  .command("sign")
  .description("print the MQTT CONNECT parameters of an Alibaba Cloud IoT device")
  .requiredOption("--product-key <pk>", "ProductKey")
  .requiredOption("--device-name <dn>", "DeviceName")
  .addOption(
    new Option("--device-secret <secret>", "DeviceSecret (or the env var, to keep it out of ps)")
      .env("SHADOWGATE_DEVICE_SECRET")
      .makeOptionMandatory(),
  )
  .option("--client-id <id>", "clientId (default: productKey.deviceName)")
  .addOption(
    new Option("--sign-method <m>", "HMAC")
      .choices(["hmacsha256", "hmacsha1", "hmacmd5"])
      .default("hmacsha256"),
  )
  .addOption(
    new Option("--secure-mode <n>", "2 = TLS, 3 = plain TCP").choices(["2", "3"]).default("2"),
  )
  .option("--timestamp <ms>", "timestamp in milliseconds (default: none, for stable values)")
  .option("--region <id>", "region of the public instance", "cn-shanghai")
  .option("--json", "print one JSON object")
  .option(
    "--gateway <pk/dn>",
    "the device is this gateway's sub-device: print its combine/login message as well",
  )
  .action(async (o: SignOptions) => exit((await import("./sign.js")).signCommand(o)));

/** Long-running commands resolve undefined and keep the process alive themselves. */
function exit(code: number | undefined): void {
  if (code !== undefined) process.exitCode = code;
}

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? ExitCodes.OK : ExitCodes.USAGE;
  } else {
    process.stderr.write(`shadowgate: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = ExitCodes.RUNTIME;
  }
}
