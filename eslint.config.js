import effect from "@effect/eslint-plugin"
import tseslint from "typescript-eslint"

/**
 * The folders of src/ and what each may import: the layering of the
 * design (protocol at the bottom, the gateway and http at the top; runs
 * never reach the gateway). An import outside this table fails `npm test`,
 * and the table itself must have no cycle, so no two folders can import
 * each other, directly or round about.
 */
/** What the HTTP-facing folders (http, agui) may use: every server folder below them. */
const serving = [
  "auth",
  "config",
  "database",
  "domain",
  "eventlog",
  "gateway",
  "llm",
  "metrics",
  "protocol",
  "runs",
  "threads"
]

const layers = {
  protocol: [],
  metrics: [],
  domain: ["protocol"],
  config: ["domain", "protocol"],
  observability: ["config"],
  database: ["config", "domain", "metrics"],
  llm: ["config", "domain", "metrics"],
  auth: ["config", "domain", "protocol"],
  eventlog: ["config", "database", "domain", "metrics", "protocol"],
  threads: ["auth", "config", "database", "domain", "eventlog", "protocol"],
  runs: ["auth", "config", "database", "domain", "eventlog", "llm", "metrics", "protocol", "threads"],
  builtin: ["config", "domain", "llm", "protocol", "runs", "threads"],
  gateway: ["auth", "config", "database", "domain", "eventlog", "metrics", "protocol", "runs", "threads"],
  agui: serving,
  // The HTTP server mounts AG-UI's routes and the page beside its own.
  http: ["agui", "web", ...serving],
  client: ["protocol"],
  cli: ["client", "protocol"],
  // The web page: its browser app is built on the SDK (client) and the protocol's types, nothing else.
  web: ["client", "protocol"]
}

const findCycle = (graph) => {
  const state = new Map()
  const visit = (node, path) => {
    if (state.get(node) === "done") return undefined
    if (state.get(node) === "open") return [...path, node]
    state.set(node, "open")
    for (const next of graph[node] ?? []) {
      const cycle = visit(next, [...path, node])
      if (cycle !== undefined) return cycle
    }
    state.set(node, "done")
    return undefined
  }
  for (const node of Object.keys(graph)) {
    const cycle = visit(node, [])
    if (cycle !== undefined) return cycle
  }
  return undefined
}
const cycle = findCycle(layers)
if (cycle !== undefined) throw new Error(`eslint.config.js: the folders import in a cycle: ${cycle.join(" -> ")}`)

const folders = Object.keys(layers)
const outside = { regex: "(^|/)(test|scripts|layers)/", message: "src/ never imports tests, scripts or wiring" }
const boundaries = folders.map((folder) => ({
  files: [`src/${folder}/**/*.ts`],
  rules: {
    "no-restricted-imports": ["error", {
      patterns: [
        outside,
        ...folders.filter((other) => other !== folder && !layers[folder].includes(other)).map((other) => ({
          regex: `(^|/)${other}/`,
          message: `src/${folder} may import only ${
            layers[folder].join(", ") || "nothing else in src"
          } (eslint.config.js)`
        }))
      ]
    }]
  }
}))

export default tseslint.config(
  { ignores: ["node_modules/**", "data/**", "bench-results/**", "dist/**"] },
  ...tseslint.configs.recommended,
  ...effect.configs.dprint,
  {
    rules: {
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-namespace": "off",
      "@typescript-eslint/no-empty-object-type": "off",
      // @effect/sql's withTransaction turns a failed COMMIT into a defect: src/database/Transaction.ts instead.
      "no-restricted-properties": ["error", {
        object: "sql",
        property: "withTransaction",
        message: "use transaction() from src/database/Transaction.ts"
      }]
    }
  },
  ...boundaries,
  {
    files: ["layers/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", {
        patterns: [{ regex: "(^|/)(test|scripts)/", message: "layers/ is wiring: it never imports tests or scripts" }]
      }]
    }
  },
  {
    files: ["scripts/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", {
        patterns: [{
          // The one checker of the run invariants, and the wire-level test client, live in test/utils, for the
          // suites and the stress suite alike.
          regex: "(^|/)test/(?!utils/(RunInvariants|ChatClient)\\.ts$)",
          message: "scripts never import tests; the test graph is layers/Test.ts"
        }]
      }]
    }
  }
)
