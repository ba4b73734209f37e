import path from "node:path";
import { START_TIMEOUT_MS, STOP_TIMEOUT_MS } from "../daemon/gateway.js";

/** What the unit of `shadowgate install` is made of; every path absolute, as on the target box. */
export interface UnitOptions {
  /** The node binary. */
  readonly node: string;
  /** Where the package is (its dist/cli/main.js runs). */
  readonly prefix: string;
  readonly configDir: string;
  readonly dataDir: string;
  readonly user: string;
  /** gateway.memory.heapMb: V8's old-space cap, --max-old-space-size. */
  readonly heapMb: number;
  /** The package version, named in the unit's header. */
  readonly version: string;
}

/**
 * V8's young generation (--max-semi-space-size, MB), set beside the heap cap. Measured with
 * 10,000 points/s (issue 14): with --max-old-space-size=48 alone, V8 ran a mark-compact about
 * 22 times a second over a 26 MB heap (~170% CPU); with semi-spaces of 2, 4 or 8 MB it ran a
 * few scavenges a second instead and 12-18 mark-compacts in 30 s (~15% CPU), RSS within 10 MB.
 */
export const SEMI_SPACE_MB = 4;

/**
 * Components the gateway runs under one lifecycle (daemon/gateway.ts): the store, the sources,
 * the poller and the cloud sync today, plus one for the local API that the config's `api`
 * section describes. Each gets START_TIMEOUT_MS to start and STOP_TIMEOUT_MS to stop, one
 * after another, so these bound a start and a stop.
 */
const COMPONENTS = 5;
export const START_BOUND_S = (COMPONENTS * START_TIMEOUT_MS) / 1000 + 30;
/**
 * A stop takes at most 5 × 5 s = 25 s; 10 s more for loading and closing. A SIGTERM during a
 * SIGHUP reload waits for the reload (a stop and a start) first and may outlast this: systemd
 * then sends SIGKILL, which the store survives (SQLite WAL, a report is durable before it is
 * sent), so the bound stays at the plain stop instead of minutes.
 */
export const STOP_BOUND_S = (COMPONENTS * STOP_TIMEOUT_MS) / 1000 + 10;
/** systemd restarts a gateway whose event loop has not pinged for this long. */
export const WATCHDOG_S = 30;

export const UNIT_NAME = "shadowgate.service";
export const UNIT_PATH = `/etc/systemd/system/${UNIT_NAME}`;

/**
 * The characters a path in the unit may have: unit files split on whitespace and expand % and
 * $, and a path that needs quoting is rare enough on a gateway box to refuse instead.
 */
const SAFE_PATH = /^\/[A-Za-z0-9._/@+-]*$/;
const SAFE_USER = /^[a-z_][a-z0-9_-]*$/;

/** The problems with `o` that would make a wrong unit (an empty list: none). */
export function unitProblems(o: UnitOptions): string[] {
  const problems: string[] = [];
  for (const [name, value] of [
    ["node", o.node],
    ["prefix", o.prefix],
    ["config dir", o.configDir],
    ["data dir", o.dataDir],
  ] as const) {
    if (!SAFE_PATH.test(value))
      problems.push(
        `${name} ${JSON.stringify(value)}: write an absolute path of letters, digits and . _ / @ + -`,
      );
  }
  if (!SAFE_USER.test(o.user))
    problems.push(`user ${JSON.stringify(o.user)}: lower-case letters, digits, _ and -`);
  if (!Number.isInteger(o.heapMb) || o.heapMb < 32)
    problems.push(`heap ${o.heapMb} MB: a whole number of at least 32`);
  return problems;
}

/** The name StateDirectory= takes when the data dir is /var/lib/<name>, else undefined. */
function stateDirectory(dataDir: string): string | undefined {
  const rel = path.posix.relative("/var/lib", dataDir);
  return rel !== "" && !rel.startsWith("..") && !rel.includes("/") ? rel : undefined;
}

/** The systemd unit text: pure, so the unit test reads exactly what install writes. */
export function unitText(o: UnitOptions): string {
  const problems = unitProblems(o);
  if (problems.length > 0) throw new Error(problems.join("; "));
  const configFile = path.posix.join(o.configDir, "gateway.yaml");
  const main = path.posix.join(o.prefix, "dist/cli/main.js");
  const state = stateDirectory(o.dataDir);
  return `# Written by \`shadowgate install\` (shadowgate ${o.version}). Re-run it after changing
# gateway.memory.heapMb (it sets --max-old-space-size below), then: systemctl restart shadowgate
# Secrets: ${o.configDir}/env (mode 0600), lines such as SHADOWGATE_API_TOKEN=...; the config
# names them as \${SHADOWGATE_API_TOKEN}.

[Unit]
Description=Shadowgate edge gateway (devices to device shadow to cloud)
After=network-online.target
Wants=network-online.target

[Service]
# READY=1 once the gateway has started, RELOADING=1/READY=1 around a reload, STOPPING=1,
# WATCHDOG=1 every ${WATCHDOG_S / 2} s: sent through systemd-notify, a child of node, hence
# NotifyAccess=all (src/daemon/systemd.ts says why).
Type=notify
NotifyAccess=all
User=${o.user}
Group=${o.user}
# Serial ports (/dev/ttyS*, /dev/ttyUSB*) belong to dialout.
SupplementaryGroups=dialout
EnvironmentFile=-${o.configDir}/env
ExecStart=${o.node} --max-old-space-size=${o.heapMb} --max-semi-space-size=${SEMI_SPACE_MB} ${main} run -c ${configFile}
# SIGHUP: reload the config and mappings; a config with problems is refused, the running one stays.
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
# ${COMPONENTS} components start one after another, ${START_TIMEOUT_MS / 1000} s each at most.
TimeoutStartSec=${START_BOUND_S}s
# ${COMPONENTS} components stop one after another, ${STOP_TIMEOUT_MS / 1000} s each at most (src/daemon/gateway.ts).
TimeoutStopSec=${STOP_BOUND_S}s
WatchdogSec=${WATCHDOG_S}s
${
  state === undefined
    ? ""
    : `StateDirectory=${state}
StateDirectoryMode=0750
`
}ReadWritePaths=${o.dataDir}
UMask=0027
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
# No PrivateDevices=: it would hide the serial ports.

[Install]
WantedBy=multi-user.target
`;
}
