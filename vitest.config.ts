import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // End-to-end suites each start a server and an embedded database; two
    // cores run two files at a time without starving the servers.
    maxWorkers: 2,
    minWorkers: 1
  }
})
