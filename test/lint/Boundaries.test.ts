/**
 * The folder boundaries of eslint.config.js bite: an import against the
 * layering (runs reaching the gateway, src reaching the tests, a script
 * reaching the test helpers) is a lint error, and `npm test` runs the lint.
 */
import { describe, expect, it } from "@effect/vitest"
import { ESLint } from "eslint"
import { fileURLToPath } from "node:url"

const cwd = fileURLToPath(new URL("../..", import.meta.url))
const eslint = new ESLint({ cwd })

const restricted = async (filePath: string, code: string) => {
  const [result] = await eslint.lintText(code, { filePath })
  return result!.messages.filter((m) => m.ruleId === "no-restricted-imports").map((m) => m.message)
}

describe("folder boundaries", () => {
  it("refuses runs/ importing the gateway, and a cycle between two folders", async () => {
    expect(await restricted("src/runs/Bad.ts", `import { Hub } from "../gateway/Hub.ts"\nexport const x = Hub\n`))
      .toEqual([expect.stringMatching(/src\/runs may import only/)])
    // eventlog sits below threads: threads may import it, so the way back is refused.
    expect(
      await restricted(
        "src/threads/Fine.ts",
        `import { EventLog } from "../eventlog/EventLog.ts"\nexport const x = EventLog\n`
      )
    )
      .toEqual([])
    expect(
      await restricted(
        "src/eventlog/Bad.ts",
        `import { Access } from "../threads/Access.ts"\nexport const x = Access\n`
      )
    ).toHaveLength(1)
  })

  it("refuses src/ and layers/ importing tests, and scripts importing test helpers other than the checker", async () => {
    expect(
      await restricted("src/http/Bad.ts", `import { sign } from "../../test/utils/tokens.ts"\nexport const x = sign\n`)
    )
      .toHaveLength(1)
    expect(await restricted("layers/Bad.ts", `import { sign } from "../test/utils/tokens.ts"\nexport const x = sign\n`))
      .toHaveLength(1)
    expect(
      await restricted(
        "scripts/stress/Bad.ts",
        `import { sign } from "../../test/utils/tokens.ts"\nexport const x = sign\n`
      )
    ).toHaveLength(1)
    expect(
      await restricted(
        "scripts/stress/Fine.ts",
        `import { runViolations } from "../../test/utils/RunInvariants.ts"\nexport const x = runViolations\n`
      )
    ).toEqual([])
  })
})
