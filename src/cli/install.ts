import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, copyFile, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse, parseDocument } from "yaml";
import { DEFAULT_HEAP_MB, gatewayConfigSchema } from "../config/gateway-schema.js";
import { ErrorCodes, ExitCodes } from "../core/errors.js";
import { UNIT_NAME, UNIT_PATH, unitProblems, unitText } from "./systemd-unit.js";

/**
 * `shadowgate install`: makes this box run the gateway as a systemd service.
 *
 * The package is not copied: the unit runs it where it is (by default the package this command
 * runs from, e.g. /usr/local/lib/node_modules/shadowgate after `npm install -g shadowgate`),
 * with its node_modules as npm installed them. Copying a package with native addons
 * (better-sqlite3, serialport) elsewhere gains nothing, and `npm install -g` again updates it
 * in place. What install writes: the system user, the config and data folders, an example
 * config and mapping (never over an existing config), an env file for secrets, and the unit.
 */

/** The package this CLI runs from: dist/cli/install.js is two folders below it. */
export const PACKAGE_DIR = fileURLToPath(new URL("../..", import.meta.url));

export interface InstallOptions {
  readonly prefix?: string;
  /** The node binary the unit runs; default this one. */
  readonly node?: string;
  readonly configDir: string;
  readonly dataDir: string;
  readonly user: string;
  /** Stage the files under this folder instead of / (no user, no chown, no systemctl). */
  readonly root?: string;
  /** Print the unit and change nothing. */
  readonly print?: boolean;
}

export interface UninstallOptions {
  readonly user: string;
  readonly configDir: string;
  readonly dataDir: string;
  readonly root?: string;
  /** Also remove the config and data folders. */
  readonly purge?: boolean;
}

/** Folders ProtectHome=yes hides from the service. */
const HIDDEN = /^\/(home|root|run\/user)(\/|$)/;

/** A step that failed: printed with SG_INSTALL, the command exits 1. */
class InstallError extends Error {}

const say = (line: string): void => void process.stdout.write(`${line}\n`);

export async function installCommand(o: InstallOptions): Promise<number> {
  try {
    return await install(o);
  } catch (e) {
    return fail(e);
  }
}

export async function uninstallCommand(o: UninstallOptions): Promise<number> {
  try {
    return await uninstall(o);
  } catch (e) {
    return fail(e);
  }
}

function fail(e: unknown): number {
  if (!(e instanceof InstallError)) throw e;
  process.stderr.write(`shadowgate: ${ErrorCodes.INSTALL} ${e.message}\n`);
  return ExitCodes.RUNTIME;
}

async function install(o: InstallOptions): Promise<number> {
  const prefix = path.resolve(o.prefix ?? PACKAGE_DIR);
  const configDir = path.resolve(o.configDir);
  const dataDir = path.resolve(o.dataDir);
  const at = under(o.root);
  const configFile = path.join(configDir, "gateway.yaml");
  const unit = {
    node: path.resolve(o.node ?? process.execPath),
    prefix,
    configDir,
    dataDir,
    user: o.user,
    heapMb: DEFAULT_HEAP_MB,
    version: await packageVersion(),
  };
  const problems = unitProblems(unit);
  if (problems.length > 0) {
    for (const p of problems) process.stderr.write(`shadowgate: ${p}\n`);
    return ExitCodes.USAGE;
  }
  // ProtectHome=yes hides these from the service: a unit running the package from there
  // would fail at start with a puzzling "Cannot find module".
  if (HIDDEN.test(prefix))
    throw new InstallError(
      `the package is under ${prefix}, which the service cannot read (ProtectHome=yes): install it with "npm install -g" or unpack it under /opt and pass --prefix`,
    );
  // This node (nvm, a home-made build) may be another box's; staged, --node names the target's.
  if (o.root === undefined && HIDDEN.test(unit.node))
    throw new InstallError(
      `node is ${unit.node}, which the service cannot run (ProtectHome=yes): install Node.js system-wide (apt-get install nodejs) or pass --node`,
    );
  if (!o.print && !o.root) requireRoot("install");
  if (!o.root && !existsSync(path.join(prefix, "dist/cli/main.js")))
    throw new InstallError(
      `${prefix}/dist/cli/main.js is missing: --prefix names the folder the package is installed in`,
    );
  unit.heapMb = await heapMbOf(at(configFile));

  if (o.print) {
    process.stdout.write(unitText(unit));
    return ExitCodes.OK;
  }

  const live = o.root === undefined;
  if (o.root !== undefined)
    say(
      `staging under ${path.resolve(o.root)}: no user is created, nothing is chowned, systemctl is not run`,
    );
  if (live) await ensureUser(o.user, dataDir);
  else say(`skipped: creating the system user ${o.user} (--root stages a tree for another box)`);
  const owner = live ? await idsOf(o.user) : undefined;

  // The service reads its config but cannot change it (root:<user>, 0750); it owns its data.
  await folder(at(configDir), 0o750, owner && { uid: 0, gid: owner.gid });
  await folder(at(dataDir), 0o750, owner);

  const envFile = path.join(configDir, "env");
  if (
    await createOnly(
      at(envFile),
      `# Secrets for the shadowgate service, read by systemd (EnvironmentFile=) as root: keep it
# mode 0600. The config names them as \${NAME}, e.g. deviceSecret: \${DEVICE_SECRET}.
# DEVICE_SECRET=...
# SHADOWGATE_API_TOKEN=...
`,
      0o600,
    )
  )
    say(`wrote ${envFile} (mode 0600, for secrets)`);
  else say(`kept ${envFile} (exists)`);

  if (existsSync(at(configFile))) {
    say(`kept ${configFile} (exists; never overwritten)`);
  } else {
    await writeExample(at, configFile, dataDir, prefix, owner?.gid);
    say(`wrote ${configFile} from the package's example (dataDir ${dataDir})`);
  }

  const unitFile = at(UNIT_PATH);
  const text = unitText(unit);
  const before = existsSync(unitFile) ? await readFile(unitFile, "utf8") : undefined;
  await mkdir(path.dirname(unitFile), { recursive: true });
  await writeFile(unitFile, text, { mode: 0o644 });
  await chmod(unitFile, 0o644);
  say(
    `${before === undefined ? "wrote" : before === text ? "kept" : "updated"} ${UNIT_PATH} (heap cap ${unit.heapMb} MB, gateway.memory.heapMb)`,
  );

  let reloaded = false;
  if (live && existsSync("/run/systemd/system")) {
    await run("systemctl", ["daemon-reload"]);
    say("ran systemctl daemon-reload");
    reloaded = true;
  }
  say("");
  say("Next steps:");
  say(`  edit ${configFile} and the files in ${configDir}/mappings (your PLCs and cloud);`);
  say(`    secrets go into ${envFile}; check with: shadowgate validate -c ${configFile}`);
  if (!reloaded) say("  systemctl daemon-reload");
  say(`  systemctl enable --now ${UNIT_NAME}`);
  if (before !== undefined && before !== text)
    say(
      `  systemctl restart ${UNIT_NAME}    (the unit changed; a running gateway keeps the old one)`,
    );
  say(`  journalctl -u ${UNIT_NAME} -f    (its log); systemctl reload ${UNIT_NAME} after edits`);
  return ExitCodes.OK;
}

async function uninstall(o: UninstallOptions): Promise<number> {
  const at = under(o.root);
  const live = o.root === undefined;
  if (live) requireRoot("uninstall");
  const configDir = path.resolve(o.configDir);
  const dataDir = path.resolve(o.dataDir);
  const unitFile = at(UNIT_PATH);
  if (existsSync(unitFile)) {
    if (live && existsSync("/run/systemd/system")) {
      await run("systemctl", ["disable", "--now", UNIT_NAME]);
      say(`stopped and disabled ${UNIT_NAME}`);
    }
    await rm(unitFile);
    say(`removed ${UNIT_PATH}`);
    if (live && existsSync("/run/systemd/system")) {
      await run("systemctl", ["daemon-reload"]);
      say("ran systemctl daemon-reload");
    }
  } else {
    say(`${UNIT_PATH} is not there: nothing to stop or remove`);
  }
  if (o.purge) {
    for (const dir of [configDir, dataDir]) {
      if (dir.split("/").filter((p) => p !== "").length < 2)
        throw new InstallError(`refusing to purge ${dir}: name a folder two levels down or more`);
      await rm(at(dir), { recursive: true, force: true });
      say(`removed ${dir}`);
    }
  } else {
    say(
      `kept ${configDir} (config, mappings, secrets) and ${dataDir} (the outbox and history); uninstall --purge removes them`,
    );
  }
  if (live) say(`kept the user ${o.user}; "userdel ${o.user}" removes it`);
  return ExitCodes.OK;
}

/** Maps a path on the target box to where it is written: under --root, or itself. */
function under(root: string | undefined): (p: string) => string {
  if (root === undefined) return (p) => p;
  const r = path.resolve(root);
  return (p) => path.join(r, p);
}

function requireRoot(what: string): void {
  if (process.getuid?.() !== 0)
    throw new InstallError(
      `${what} needs root (it writes ${UNIT_PATH} and creates a system user): run it with sudo, or use --root DIR to stage the files, or --print to see the unit`,
    );
}

async function packageVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(path.join(PACKAGE_DIR, "package.json"), "utf8")) as {
    version?: string;
  };
  return pkg.version ?? "unknown";
}

/**
 * gateway.memory.heapMb of the config at `file` when there is one, checked by the schema's own
 * rule, else the default. Only that key is read: the rest (sources, secrets from the env file)
 * need not be valid or set at install time.
 */
async function heapMbOf(file: string): Promise<number> {
  if (!existsSync(file)) return DEFAULT_HEAP_MB;
  let raw: unknown;
  try {
    raw = parse(await readFile(file, "utf8"));
  } catch (e) {
    throw new InstallError(`${file}: ${(e as Error).message}`);
  }
  const memory = (raw as { gateway?: { memory?: unknown } } | null)?.gateway?.memory;
  const r = gatewayConfigSchema.shape.gateway.safeParse({ memory });
  if (!r.success)
    throw new InstallError(
      `${file}: gateway.memory: ${r.error.issues.map((i) => i.message).join("; ")}`,
    );
  return r.data.memory.heapMb;
}

async function ensureUser(user: string, home: string): Promise<void> {
  if ((await run("id", ["-u", user], true)).code === 0) {
    say(`kept the user ${user} (exists)`);
    return;
  }
  // A system user with no login shell; dialout for the serial ports (the unit adds the group
  // too, so a user made by hand works as well).
  await run("useradd", [
    "--system",
    "--user-group",
    "--groups",
    "dialout",
    "--home-dir",
    home,
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
    "--comment",
    "Shadowgate edge gateway",
    user,
  ]);
  say(`created the system user ${user} (no login shell, in dialout)`);
}

async function idsOf(user: string): Promise<{ uid: number; gid: number }> {
  const uid = Number((await run("id", ["-u", user])).stdout.trim());
  const gid = Number((await run("id", ["-g", user])).stdout.trim());
  return { uid, gid };
}

async function folder(
  dir: string,
  mode: number,
  owner: { uid: number; gid: number } | undefined,
): Promise<void> {
  // Parents get the usual mode (a 0750 /var/lib/x above the data dir would lock the user out);
  // mkdir's mode passes through the umask and leaves an existing folder as it was: chmod.
  await mkdir(path.dirname(dir), { recursive: true });
  await mkdir(dir, { recursive: true, mode });
  await chmod(dir, mode);
  if (owner) await chown(dir, owner.uid, owner.gid);
  say(
    `folder ${dir} (mode ${mode.toString(8)}${owner ? `, uid ${owner.uid} gid ${owner.gid}` : ""})`,
  );
}

/** Writes `text` only where no file is; true when it wrote. */
async function createOnly(
  file: string,
  text: string,
  mode: number,
  gid?: number,
): Promise<boolean> {
  try {
    await writeFile(file, text, { flag: "wx", mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  }
  await chmod(file, mode);
  if (gid !== undefined) await chown(file, 0, gid);
  return true;
}

/**
 * The package's example config with dataDir on the data dir and the mappings beside it in
 * <config dir>/mappings, plus the example mappings (each only where no file is).
 */
async function writeExample(
  at: (p: string) => string,
  configFile: string,
  dataDir: string,
  prefix: string,
  gid: number | undefined,
): Promise<void> {
  const example = await readFile(path.join(PACKAGE_DIR, "config/gateway.yaml"), "utf8");
  const doc = parseDocument(
    example.replace(
      "$schema=schemas/gateway.schema.json",
      `$schema=${prefix}/config/schemas/gateway.schema.json`,
    ),
  );
  doc.setIn(["gateway", "dataDir"], dataDir);
  doc.set("mappings", "mappings");
  const header = `# Written by \`shadowgate install\` from the package's example; install never overwrites it.
# Edit sources, cloud and mappings/, check it with
#   shadowgate validate -c ${configFile}
# then: systemctl reload shadowgate. Secrets: \${NAME} from ${path.dirname(configFile)}/env.
`;
  // The editor's schema line stays the first line; the note goes under it.
  const [first = "", ...rest] = doc.toString().split("\n");
  const text = first.startsWith("# yaml-language-server:")
    ? [first, header + rest.join("\n")].join("\n")
    : header + doc.toString();
  await createOnly(at(configFile), text, 0o640, gid);
  const mappings = path.join(path.dirname(configFile), "mappings");
  await mkdir(at(mappings), { recursive: true, mode: 0o750 });
  await chmod(at(mappings), 0o750);
  if (gid !== undefined) await chown(at(mappings), 0, gid);
  const source = path.join(PACKAGE_DIR, "mappings");
  for (const name of await readdir(source)) {
    if (!name.endsWith(".yaml")) continue;
    const target = at(path.join(mappings, name));
    if (existsSync(target)) continue;
    await copyFile(path.join(source, name), target);
    await chmod(target, 0o640);
    if (gid !== undefined) await chown(target, 0, gid);
    say(`wrote ${path.join(mappings, name)} (example mapping)`);
  }
}

/** Runs a command; a non-zero exit is an InstallError unless `allowFailure`. */
function run(
  cmd: string,
  args: string[],
  allowFailure = false,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 127) : 0;
      if (code !== 0 && !allowFailure) {
        reject(
          new InstallError(`${cmd} ${args.join(" ")} failed: ${stderr.trim() || err?.message}`),
        );
        return;
      }
      resolve({ code, stdout, stderr });
    });
  });
}
