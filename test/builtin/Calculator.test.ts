import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { evaluate, extractExpressions } from "../../src/builtin/Calculator.ts"

const value = (expression: string) => {
  const result = evaluate(expression)
  if (Either.isLeft(result)) throw new Error(`${expression} failed: ${result.left}`)
  return result.right
}

const error = (expression: string) => {
  const result = evaluate(expression)
  if (Either.isRight(result)) throw new Error(`${expression} evaluated to ${result.right}`)
  return result.left
}

describe("evaluate", () => {
  it("respects precedence of * / % over + -", () => {
    expect(value("12 * (3 + 4)")).toBe(84)
    expect(value("2 + 3 * 4")).toBe(14)
    expect(value("10 - 6 / 2")).toBe(7)
    expect(value("1 + 10 % 4")).toBe(3)
    expect(value("(2 + 3) * 4")).toBe(20)
  })

  it("associates - and / to the left and power to the right", () => {
    expect(value("10 - 4 - 3")).toBe(3)
    expect(value("64 / 4 / 2")).toBe(8)
    expect(value("2 ^ 3 ^ 2")).toBe(512)
    expect(value("2 ** 3 ** 2")).toBe(512)
    expect(value("(2 ^ 3) ^ 2")).toBe(64)
  })

  it("handles unary signs, binding looser than power", () => {
    expect(value("-3 + 5")).toBe(2)
    expect(value("-2 ^ 2")).toBe(-4)
    expect(value("(-2) ^ 2")).toBe(4)
    expect(value("2 ^ -1")).toBe(0.5)
    expect(value("--3")).toBe(3)
    expect(value("+4 * -2")).toBe(-8)
    expect(Object.is(value("0 * -5"), 0)).toBe(true)
  })

  it("reads decimals, exponents, whitespace and the × ÷ signs", () => {
    expect(value("1.5 + .5")).toBe(2)
    expect(value("1e3 + 2.5E-1")).toBe(1000.25)
    expect(value("  3\t×  4 ÷ 2 ")).toBe(6)
  })

  it("computes functions and constants", () => {
    expect(value("sqrt(16) + 2")).toBe(6)
    expect(value("abs(-7)")).toBe(7)
    expect(value("round(2.5) + round(-2.5)")).toBe(0)
    expect(value("round(3.14159, 2)")).toBe(3.14)
    expect(value("floor(2.7) * ceil(2.1)")).toBe(6)
    expect(value("ln(e)")).toBe(1)
    expect(value("log(1000)")).toBe(3)
    expect(value("sin(pi)")).toBe(0)
    expect(value("cos(0) + tan(0)")).toBe(1)
    expect(value("min(4, 2, 8) + max(1, 9, 3)")).toBe(11)
    expect(value("max(5)")).toBe(5)
    expect(value("PI")).toBeCloseTo(3.14159, 5)
    expect(value("sqrt(max(9, 16))")).toBe(4)
  })

  it("reports division and modulo by zero", () => {
    expect(error("1/0")).toBe("division by zero")
    expect(error("5 % (2 - 2)")).toBe("division by zero")
  })

  it("reports garbage with its position", () => {
    expect(error("2 + $")).toBe("unexpected \"$\" at position 5")
    expect(error("2 3")).toBe("unexpected \"3\" at position 3")
    expect(error("2 + x")).toBe("unknown name \"x\" at position 5")
    expect(error("sqrt 4")).toMatch(/^expected "\(" after sqrt/)
    expect(error("1 +")).toBe("unexpected end of expression")
    expect(error("")).toBe("empty expression")
    expect(error("sqrt(1, 2)")).toBe("sqrt expects 1 argument, got 2")
  })

  it("reports unbalanced parentheses", () => {
    expect(error("(1 + 2")).toBe("unbalanced parentheses")
    expect(error("1 + 2)")).toBe("unbalanced parentheses")
    expect(error(")1(")).toBe("unbalanced parentheses")
  })

  it("reports results outside the real numbers", () => {
    expect(error("10 ^ 400")).toBe("result is not a finite number")
    expect(error("(-8) ^ 0.5")).toBe("result is not a finite number")
    expect(error("sqrt(-1)")).toBe("square root of a negative number")
    expect(error("ln(0)")).toBe("logarithm of a non-positive number")
  })

  it("refuses input that is too long or too deeply nested", () => {
    expect(error("1+".repeat(300) + "1")).toMatch(/too long/)
    expect(value("1+".repeat(200) + "1")).toBe(201)
    expect(error("(".repeat(150) + "1" + ")".repeat(150))).toMatch(/nested too deeply/)
    expect(error("-".repeat(150) + "1")).toMatch(/nested too deeply/)
    expect(value("(".repeat(50) + "1" + ")".repeat(50))).toBe(1)
  })
})

describe("extractExpressions", () => {
  it("finds an expression inside a sentence", () => {
    expect(extractExpressions("what is 12 * (3 + 4)?")).toEqual(["12 * (3 + 4)"])
    expect(extractExpressions("compute sqrt(16) + 2 please")).toEqual(["sqrt(16) + 2"])
    expect(extractExpressions("What is 2+2.")).toEqual(["2+2"])
  })

  it("translates operator words", () => {
    expect(extractExpressions("what's 7 plus 5 times 2")).toEqual(["7 + 5 * 2"])
    expect(extractExpressions("what is 10 divided by 4 multiplied by 2")).toEqual(["10 / 4 * 2"])
    expect(extractExpressions("9 minus 4 over 2")).toEqual(["9 - 4 / 2"])
    expect(extractExpressions("2 to the power of 10")).toEqual(["2 ^ 10"])
    expect(extractExpressions("5 squared")).toEqual(["5 ^ 2"])
  })

  it("finds several expressions, keeping commas inside function calls", () => {
    expect(extractExpressions("what is 2 + 2 and 3 * 4?")).toEqual(["2 + 2", "3 * 4"])
    expect(extractExpressions("min(1, 2) and max(3,4)")).toEqual(["min(1, 2)", "max(3,4)"])
  })

  it("strips what prose glues to an expression", () => {
    expect(extractExpressions("(see 2+2) ok")).toEqual(["2+2"])
    expect(extractExpressions("so 6 * 7 - that's it")).toEqual(["6 * 7"])
  })

  it("keeps an expression with a missing bracket, so the calculator can say what is wrong", () => {
    expect(extractExpressions("what is 12 * (3 + 4")).toEqual(["12 * (3 + 4"])
  })

  it("does not take a lone number, a date or word-only operators for arithmetic", () => {
    expect(extractExpressions("I have 3 cats")).toEqual([])
    expect(extractExpressions("it is minus 5 degrees")).toEqual([])
    expect(extractExpressions("I was there 3 times")).toEqual([])
    expect(extractExpressions("meet on 2024-01-15 at 10:30")).toEqual([])
    expect(extractExpressions("what time is it in Europe/Paris?")).toEqual([])
    expect(extractExpressions("hello there")).toEqual([])
  })

  it("extracts expressions that the calculator evaluates", () => {
    for (const expression of extractExpressions("what's 3 plus 4, 8 / 2 and sqrt(81) times 2?")) {
      expect(evaluate(expression)._tag).toBe("Right")
    }
    expect(extractExpressions("what's 3 plus 4, 8 / 2 and sqrt(81) times 2?")).toEqual([
      "3 + 4",
      "8 / 2",
      "sqrt(81) * 2"
    ])
  })
})
