/**
 * A safe arithmetic evaluator (no eval: a parser and a tree walk) and the
 * extractor that finds arithmetic in a chat message for the built-in agent.
 */
import { Either } from "effect"
import {
  CONSTANTS,
  FUNCTIONS,
  MAX_LENGTH,
  type Node,
  parse,
  parseTokens,
  scan,
  type Token
} from "./CalculatorParser.ts"

class EvalFailure {
  constructor(readonly message: string) {}
}

const fail = (message: string): never => {
  throw new EvalFailure(message)
}

// sin(pi) is 1.2e-16 in floating point; a trig result that close to zero is zero.
const trig = (f: (x: number) => number) => (x: number) => {
  const y = f(x)
  return Math.abs(y) < 1e-15 ? 0 : y
}

// Half away from zero, so round(-2.5) is -3 like round(2.5) is 3 (Math.round would give -2).
const round = (x: number, digits = 0) => {
  if (!Number.isInteger(digits) || digits < 0 || digits > 15) fail("round takes 0 to 15 digits")
  const scale = 10 ** digits
  return Math.sign(x) * Math.round(Math.abs(x) * scale) / scale
}

const IMPLEMENTATIONS: Readonly<Record<string, (...args: ReadonlyArray<number>) => number>> = {
  sqrt: (x) => x < 0 ? fail("square root of a negative number") : Math.sqrt(x),
  abs: (x) => Math.abs(x),
  round: (x, digits) => round(x, digits),
  floor: (x) => Math.floor(x),
  ceil: (x) => Math.ceil(x),
  ln: (x) => x <= 0 ? fail("logarithm of a non-positive number") : Math.log(x),
  log: (x) => x <= 0 ? fail("logarithm of a non-positive number") : Math.log10(x),
  sin: trig(Math.sin),
  cos: trig(Math.cos),
  tan: trig(Math.tan),
  min: (...xs) => Math.min(...xs),
  max: (...xs) => Math.max(...xs)
}

const run = (node: Node): number => {
  switch (node.kind) {
    case "number":
      return node.value
    case "negate":
      return -run(node.operand)
    case "call":
      return IMPLEMENTATIONS[node.name]!(...node.args.map(run))
    case "binary": {
      const left = run(node.left)
      const right = run(node.right)
      switch (node.op) {
        case "+":
          return left + right
        case "-":
          return left - right
        case "*":
          return left * right
        case "/":
          return right === 0 ? fail("division by zero") : left / right
        case "%":
          return right === 0 ? fail("division by zero") : left % right
        case "^":
          return left ** right
      }
    }
  }
}

/** Evaluates an arithmetic expression; Left is a message meant for a human. */
export const evaluate = (expression: string): Either.Either<number, string> =>
  Either.flatMap(parse(expression), (tree) => {
    try {
      const result = run(tree)
      if (!Number.isFinite(result)) return Either.left("result is not a finite number")
      // -0 is an artefact (e.g. -0 * 5); nobody wants to read it.
      return Either.right(result === 0 ? 0 : result)
    } catch (error) {
      if (error instanceof EvalFailure) return Either.left(error.message)
      throw error
    }
  })

const WORD_FORMS: ReadonlyArray<readonly [RegExp, string]> = [
  [/\b(?:raised\s+)?to\s+the\s+power\s+of\b/gi, " ^ "],
  [/\braised\s+to\b/gi, " ^ "],
  [/\bsquare\s+root\s+of\s+(\d+(?:\.\d+)?)/gi, " sqrt($1) "],
  [/\bmultiplied\s+by\b/gi, " * "],
  [/\bdivided\s+by\b/gi, " / "],
  [/\btimes\b/gi, " * "],
  [/\bplus\b/gi, " + "],
  [/\bminus\b/gi, " - "],
  [/\bover\b/gi, " / "],
  [/\bmod(?:ulo)?\b/gi, " % "],
  [/\bsquared\b/gi, " ^ 2 "],
  [/\bcubed\b/gi, " ^ 3 "],
  // Dates look like subtractions or divisions; hide them so "2024-01-15" is not computed.
  [/\b\d{4}-\d{1,2}-\d{1,2}\b/g, " date "],
  [/\b\d{1,2}\/\d{1,2}\/\d{2,4}\b/g, " date "]
]

const MAX_TEXT = 4000

const isKnownWord = (token: Token) => {
  const name = token.text.toLowerCase()
  return name in FUNCTIONS || name in CONSTANTS
}

const belongs = (token: Token) => token.kind === "word" ? isKnownWord(token) : token.kind !== "other"

/** Splits at commas outside parentheses: in prose "3, 4 and 5" they separate, in min(3, 4) they do not. */
const splitTopLevel = (run: ReadonlyArray<Token>): ReadonlyArray<ReadonlyArray<Token>> => {
  const segments: Array<Array<Token>> = [[]]
  let depth = 0
  for (const token of run) {
    if (token.kind === "lparen") depth++
    if (token.kind === "rparen") depth--
    if (token.kind === "comma" && depth <= 0) segments.push([])
    else segments[segments.length - 1]!.push(token)
  }
  return segments
}

const count = (tokens: ReadonlyArray<Token>, kind: Token["kind"]) => tokens.filter((t) => t.kind === kind).length

/** Drops what prose glues to an expression: a dangling operator, an unmatched bracket. */
const trim = (segment: ReadonlyArray<Token>): ReadonlyArray<Token> => {
  let tokens = segment
  for (;;) {
    const first = tokens[0]
    const last = tokens[tokens.length - 1]
    if (first === undefined || last === undefined) return tokens
    const unbalanced = count(tokens, "lparen") - count(tokens, "rparen")
    const dropFirst = first.kind === "rparen" || first.kind === "comma" ||
      (first.kind === "op" && first.text !== "-" && first.text !== "+") ||
      (first.kind === "lparen" && unbalanced > 0)
    const dropLast = last.kind === "op" || last.kind === "lparen" || last.kind === "comma" ||
      (last.kind === "word" && last.text.toLowerCase() in FUNCTIONS) ||
      (last.kind === "rparen" && unbalanced < 0)
    if (!dropFirst && !dropLast) return tokens
    tokens = tokens.slice(dropFirst ? 1 : 0, dropLast ? tokens.length - 1 : tokens.length)
  }
}

const hasOperation = (node: Node): boolean => {
  switch (node.kind) {
    case "number":
      return false
    case "negate":
      return hasOperation(node.operand)
    case "binary":
    case "call":
      return true
  }
}

/**
 * Finds arithmetic in natural language: "what's 7 plus 5 times 2" gives
 * ["7 + 5 * 2"]. A bare number is not arithmetic, so "I have 3 cats" gives [].
 */
export const extractExpressions = (text: string): ReadonlyArray<string> => {
  const normalized = WORD_FORMS.reduce(
    (acc, [pattern, replacement]) => acc.replace(pattern, replacement),
    text.slice(0, MAX_TEXT)
  )
  const found: Array<string> = []
  const consider = (segment: ReadonlyArray<Token>) => {
    const tokens = trim(segment)
    const first = tokens[0]
    const last = tokens[tokens.length - 1]
    if (first === undefined || last === undefined) return
    const expression = normalized.slice(first.pos, last.end).replace(/\s+/g, " ")
    if (expression.length > MAX_LENGTH) return
    const tree = parseTokens(tokens)
    // A forgotten bracket is still a request for arithmetic; the calculator will say what is wrong.
    const wanted = Either.isRight(tree)
      ? hasOperation(tree.right)
      : tree.left === "unbalanced parentheses" && count(tokens, "op") > 0 && count(tokens, "number") > 0
    if (wanted && !found.includes(expression)) found.push(expression)
  }
  let run: Array<Token> = []
  for (const token of [...scan(normalized), undefined]) {
    if (token !== undefined && belongs(token)) {
      run.push(token)
      continue
    }
    splitTopLevel(run).forEach(consider)
    run = []
  }
  return found
}
