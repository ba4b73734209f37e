// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";

/**
 * The layer rules of docs/architecture.md, as lint: each folder of src names the folders it may
 * import from, so that a wrong import fails CI (test/unit/lint/layers.test.ts proves the rules
 * report each kind of breach). A relative import that climbs out of a folder (`../x/...`) must
 * land in an allowed one; a sibling file (`../file.js`) is always fine.
 */

/**
 * @param {string} folder the files it governs, under src/
 * @param {string[]} allowed the top-level folders of src it may import from
 * @param {{ regex: string, message: string }[]} [more] further patterns
 * @param {boolean} [opcua] whether node-opcua may be imported (only behind the OPC UA doors)
 */
const layer = (folder, allowed, more = [], opcua = false) => ({
  files: [`src/${folder}/**/*.ts`],
  rules: {
    "no-restricted-imports": [
      "error",
      {
        patterns: [
          {
            regex: `^(\\.\\./)+(?!(${allowed.join("|")})/)[a-z-]+/`,
            message: `src/${folder.split("/")[0]} may import only from ${allowed.join(", ") || "itself"} (docs/architecture.md)`,
          },
          ...(opcua
            ? []
            : [
                {
                  // ~130 MB of RSS: loaded only when an OPC UA source is configured.
                  regex: "^node-opcua",
                  message: "node-opcua is imported only in src/south/opcua and src/sim/opcua",
                },
              ]),
          ...more,
        ],
      },
    ],
  },
});

/** Outside a folder, only its public face: the tables and the contracts. */
const faces = [
  {
    regex: "^(\\.\\./)+south/(?!(registry|protocol|driver)\\.js$)",
    message:
      "outside src/south, import the protocol table (registry.js) or the contracts (protocol.js, driver.js), not a protocol's internals",
  },
  {
    regex: "^(\\.\\./)+north/dialects/(?!index\\.js$)",
    message:
      "outside src/north, import the dialect table (dialects/index.js), not a dialect's internals",
  },
];

const SIM = ["core", "mapping", "south", "north", "config", "sim"];

export default tseslint.config(
  { ignores: ["dist/", "build/", "node_modules/", "coverage/", "scripts/bench/results/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: "readonly", console: "readonly" } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
    },
  },
  layer("core", []),
  layer("mapping", ["core"]),
  // A protocol folder climbing into another (../opcua/) is refused too: protocols do not know
  // each other, each is one folder and one entry in the table.
  layer("south", ["core", "mapping"]),
  layer("south/opcua", ["core", "mapping"], [], true),
  layer("north", ["core"]),
  layer("store", ["core"]),
  layer("shadow", ["core", "mapping"]),
  layer("config", ["core", "mapping", "south", "north"], faces),
  // The local API sees the gateway only through interfaces of its own (api/host.ts: ApiHost,
  // api/metrics.ts: MetricsSource); the daemon builds the adapters (api-host.ts, metrics-source.ts).
  layer("api", ["core"]),
  layer("daemon", ["core", "mapping", "south", "north", "store", "shadow", "config", "api"], faces),
  // The simulators stand in for the devices and the cloud: they may speak their protocols'
  // internals (frames, the Alibaba wire format), but nothing but the CLI imports them.
  layer("sim", SIM),
  layer("sim/opcua", SIM, [], true),
  // The console runs in the browser: plain ES modules, served as they are (console/).
  {
    files: ["console/**/*.js"],
    languageOptions: {
      globals: {
        document: "readonly",
        location: "readonly",
        sessionStorage: "readonly",
        fetch: "readonly",
        confirm: "readonly",
        addEventListener: "readonly",
        removeEventListener: "readonly",
        setTimeout: "readonly",
        setInterval: "readonly",
        clearInterval: "readonly",
        AbortController: "readonly",
        TextDecoderStream: "readonly",
      },
    },
  },
);
