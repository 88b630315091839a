/**
 * Tokenizer and recursive-descent parser behind the calculator. Parsing is
 * separate from evaluation so that the expression extractor can ask "is this
 * well-formed arithmetic?" without caring whether it divides by zero.
 */
import { Either } from "effect"

export const MAX_LENGTH = 500
export const MAX_DEPTH = 100

export type BinaryOp = "+" | "-" | "*" | "/" | "%" | "^"

export type Node =
  | { readonly kind: "number"; readonly value: number }
  | { readonly kind: "negate"; readonly operand: Node }
  | { readonly kind: "binary"; readonly op: BinaryOp; readonly left: Node; readonly right: Node }
  | { readonly kind: "call"; readonly name: string; readonly args: ReadonlyArray<Node> }

export type TokenKind = "number" | "op" | "lparen" | "rparen" | "comma" | "word" | "other"

export interface Token {
  readonly kind: TokenKind
  /** For operators, the canonical symbol (`**` becomes `^`, `×` becomes `*`). */
  readonly text: string
  readonly pos: number
  readonly end: number
}

/** Arity of each function; the evaluator owns what they compute. */
export const FUNCTIONS: Readonly<Record<string, { readonly min: number; readonly max: number }>> = {
  sqrt: { min: 1, max: 1 },
  abs: { min: 1, max: 1 },
  round: { min: 1, max: 2 },
  floor: { min: 1, max: 1 },
  ceil: { min: 1, max: 1 },
  ln: { min: 1, max: 1 },
  log: { min: 1, max: 1 },
  sin: { min: 1, max: 1 },
  cos: { min: 1, max: 1 },
  tan: { min: 1, max: 1 },
  min: { min: 1, max: Infinity },
  max: { min: 1, max: Infinity }
}

export const CONSTANTS: Readonly<Record<string, number>> = { pi: Math.PI, "π": Math.PI, e: Math.E }

const OPERATORS: Readonly<Record<string, BinaryOp>> = {
  "+": "+",
  "-": "-",
  "−": "-",
  "*": "*",
  "×": "*",
  "/": "/",
  "÷": "/",
  "%": "%",
  "^": "^"
}

// A dot must be followed by digits so that a sentence's full stop is not read as part of "2.".
const NUMBER = /(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?/y
const WORD = /\p{L}+/uy

/** Never fails: characters the calculator does not know become `other` tokens, which the parser rejects. */
export const scan = (input: string): ReadonlyArray<Token> => {
  const tokens: Array<Token> = []
  let i = 0
  const push = (kind: TokenKind, text: string, length: number) => {
    tokens.push({ kind, text, pos: i, end: i + length })
    i += length
  }
  while (i < input.length) {
    const char = input[i]!
    if (/\s/.test(char)) {
      i++
      continue
    }
    NUMBER.lastIndex = i
    WORD.lastIndex = i
    const number = NUMBER.exec(input)
    const word = number === null ? WORD.exec(input) : null
    if (number !== null) push("number", number[0], number[0].length)
    else if (word !== null) push("word", word[0], word[0].length)
    else if (input.startsWith("**", i)) push("op", "^", 2)
    else if (char in OPERATORS) push("op", OPERATORS[char]!, 1)
    else if (char === "(") push("lparen", char, 1)
    else if (char === ")") push("rparen", char, 1)
    else if (char === ",") push("comma", char, 1)
    else {
      const other = String.fromCodePoint(input.codePointAt(i)!)
      push("other", other, other.length)
    }
  }
  return tokens
}

class ParseFailure {
  constructor(readonly message: string) {}
}

const describe = (token: Token) => `unexpected "${token.text}" at position ${token.pos + 1}`

/** Parses a token list (all of it) into a syntax tree, or explains what is wrong. */
export const parseTokens = (tokens: ReadonlyArray<Token>): Either.Either<Node, string> => {
  let index = 0
  let depth = 0
  const peek = () => tokens[index]
  const fail = (message: string): never => {
    throw new ParseFailure(message)
  }
  const next = () => tokens[index++] ?? fail("unexpected end of expression")
  const isOp = (...ops: ReadonlyArray<string>) => {
    const token = peek()
    return token !== undefined && token.kind === "op" && ops.includes(token.text)
  }
  // Every recursive rule goes through here, so no input can recurse deeper than MAX_DEPTH.
  const nested = <A>(f: () => A): A => {
    if (++depth > MAX_DEPTH) fail(`expression is nested too deeply (more than ${MAX_DEPTH} levels)`)
    const result = f()
    depth--
    return result
  }

  const additive = (): Node => {
    let left = multiplicative()
    while (isOp("+", "-")) {
      const op = next().text as BinaryOp
      left = { kind: "binary", op, left, right: multiplicative() }
    }
    return left
  }
  const multiplicative = (): Node => {
    let left = unary()
    while (isOp("*", "/", "%")) {
      const op = next().text as BinaryOp
      left = { kind: "binary", op, left, right: unary() }
    }
    return left
  }
  // Unary minus binds looser than power, so -2^2 is -4 as in conventional notation.
  const unary = (): Node => {
    if (isOp("+")) {
      next()
      return nested(unary)
    }
    if (isOp("-")) {
      next()
      return { kind: "negate", operand: nested(unary) }
    }
    return power()
  }
  const power = (): Node => {
    const base = primary()
    if (!isOp("^")) return base
    next()
    // Right-associative: 2^3^2 is 2^(3^2); the exponent may carry its own sign (2^-1).
    return { kind: "binary", op: "^", left: base, right: nested(unary) }
  }
  const primary = (): Node => {
    const token = next()
    switch (token.kind) {
      case "number":
        return { kind: "number", value: Number(token.text) }
      case "lparen":
        return nested(() => {
          const inner = additive()
          expect("rparen")
          return inner
        })
      case "word":
        return named(token)
      default:
        return fail(describe(token))
    }
  }
  const expect = (kind: TokenKind) => {
    const token = next()
    if (token.kind !== kind) fail(describe(token))
  }
  const named = (token: Token): Node => {
    const name = token.text.toLowerCase()
    const constant = CONSTANTS[name]
    if (constant !== undefined) return { kind: "number", value: constant }
    const arity = FUNCTIONS[name] ?? fail(`unknown name "${token.text}" at position ${token.pos + 1}`)
    if (peek()?.kind !== "lparen") fail(`expected "(" after ${name} at position ${token.end + 1}`)
    next()
    const args = nested(() => {
      const list = [additive()]
      while (peek()?.kind === "comma") {
        next()
        list.push(additive())
      }
      expect("rparen")
      return list
    })
    if (args.length < arity.min || args.length > arity.max) {
      const expected = arity.max === Infinity ? `at least ${arity.min}` : `${arity.min}`
      fail(`${name} expects ${expected} argument${arity.max === 1 ? "" : "s"}, got ${args.length}`)
    }
    return { kind: "call", name, args }
  }

  try {
    if (tokens.length === 0) return Either.left("empty expression")
    const unknown = tokens.find((t) => t.kind === "other")
    if (unknown !== undefined) return Either.left(describe(unknown))
    let open = 0
    for (const token of tokens) {
      open += token.kind === "lparen" ? 1 : token.kind === "rparen" ? -1 : 0
      if (open < 0) break
    }
    if (open !== 0) return Either.left("unbalanced parentheses")
    const tree = additive()
    const rest = peek()
    return rest === undefined ? Either.right(tree) : Either.left(describe(rest))
  } catch (error) {
    if (error instanceof ParseFailure) return Either.left(error.message)
    throw error
  }
}

export const parse = (expression: string): Either.Either<Node, string> =>
  expression.length > MAX_LENGTH
    ? Either.left(`expression is too long (more than ${MAX_LENGTH} characters)`)
    : parseTokens(scan(expression))
