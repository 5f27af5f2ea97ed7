// A model of the JavaScript interpreter Photopea runs plugin scripts in. Photopea does not `eval` a
// script: it parses it with acorn and walks the tree in its own interpreter, which does less than a
// browser and does some of it differently. This file walks the acorn tree the same way, so a script
// that relies on what Photopea does not do fails here as it would there. Pure: runs in Node and in
// the browser emulation (photopea-emulator.ts).
//
// Where each behaviour comes from. [pp.js]: read from a published copy of Photopea's pp.js (p2pz
// issue 17); #N: github.com/photopea/photopea/issues/N.
// - Photopea runs scripts "in my own JS interpreter" (the maintainer in #1918, 2020; "a bug in our
//   Javascript interpreter", #5112, 2022; a new engine briefly answered `[].length` as undefined,
//   #7190, 2024; "I released a new scripting engine today", #8113, 2025-08). It walks acorn's ESTree
//   nodes [pp.js]; #6320 quotes the same node names (`CallExpression`, `FunctionExpression`).
// - `var f = function () {}` leaves `f` undefined: only declarations define functions [pp.js]; #6320
//   shows function expressions mishandled there before.
// - `try { } finally { }`: the finally block never runs [pp.js]. `catch` runs (#5859 relies on it).
// - `==` between two layers compares the layers underneath; `!=`, `===` and `!==` compare the wrapper
//   objects, and each read hands out a fresh wrapper, so `l != a` is always true [pp.js].
// - `layer.bounds` holds UnitValue objects and `.value` is the number (the maintainer's own `moveTo`
//   in #5837: `l.translate(X-bs[0].value, Y-bs[1].value)`; #6740 and #2252 read `.value` too).
//   `Number(u)` is NaN and `number − UnitValue` comes out negated [pp.js].
// - A script that throws gets no "done" message at all (#5674: an embedding page gets "done" only when
//   a script finishes, and asks for a way to learn that one failed) [pp.js].
// - Lines starting with `#` are blanked [pp.js] (#5616 shows Photoshop's `#include` lines).
// Everything else this model refuses with `Unmodelled` (never catchable by the script): `let`/`const`,
// arrow functions, `this`, `new`, `for…in`, `switch`, labels, template literals, UnitValue in any other
// operator, host objects passed to JSON. Those may or may not work in Photopea; our scripts must not
// depend on them, and the test says so instead of guessing. Assumed, not observed: a function
// declaration nested in a function, `catch (e)` of a runtime error and array `push` work as in
// JavaScript (docs/PHOTOPEA.md gives a script to check a live Photopea).
import { parse } from 'acorn';
import type { AnyNode, Expression, FunctionDeclaration, Identifier, MemberExpression, Pattern, Program, Statement } from 'acorn';

/** A length with a unit, as Photopea's `layer.bounds[i]` and `selection.bounds[i]`. */
export class UnitValue {
  constructor(
    readonly value: number,
    readonly type: string = 'px',
  ) {}
  toString(): string {
    return `${this.value} ${this.type}`;
  }
}

/** Marks host objects (layers, documents): `==` compares `[UNDERLYING]` when both sides have one. */
export const UNDERLYING = Symbol('underlying');

/** Something the model does not know Photopea's answer to: fails the test, never caught by the script. */
export class Unmodelled extends Error {
  constructor(what: string) {
    super(`not modelled (not known to work in Photopea's interpreter): ${what}`);
    this.name = 'Unmodelled';
  }
}

/** A value thrown by the script (`throw x`) or by the interpreter on its behalf (a TypeError). */
class Thrown {
  constructor(readonly value: unknown) {}
}

class Closure {
  constructor(
    readonly node: FunctionDeclaration,
    readonly scope: Scope,
  ) {}
}

class Scope {
  readonly vars = new Map<string, unknown>();
  constructor(readonly parent: Scope | null) {}
  find(name: string): Scope | null {
    for (let s: Scope | null = this; s !== null; s = s.parent) if (s.vars.has(name)) return s;
    return null;
  }
}

type Completion = { readonly kind: 'normal' } | { readonly kind: 'return'; readonly value: unknown } | { readonly kind: 'break' } | { readonly kind: 'continue' };
const NORMAL: Completion = Object.freeze({ kind: 'normal' });

export const INTERPRETER_DEFAULTS = Object.freeze({
  /** A script that evaluates more nodes than this is stopped (a loop that never ends). */
  maxSteps: 2_000_000,
});

/** How a script ended: `error` is null when it ran to its end (Photopea then answers "done"). */
export interface ScriptOutcome {
  readonly error: string | null;
  /** The script used something this model refuses (see the header). */
  readonly unmodelled: boolean;
}

/** Photopea blanks every line that starts with `#` before parsing. */
export function blankHashLines(source: string): string {
  return source
    .split('\n')
    .map((line) => (/^\s*#/.test(line) ? '' : line))
    .join('\n');
}

function isUnit(v: unknown): v is UnitValue {
  return v instanceof UnitValue;
}

function isHost(v: unknown): v is { [UNDERLYING]: unknown } {
  return typeof v === 'object' && v !== null && UNDERLYING in v;
}

function typeError(message: string): Thrown {
  return new Thrown(new TypeError(message));
}

/** The globals every script sees besides the host's (`app`, …). */
function builtins(): Record<string, unknown> {
  const refuseHost = (_key: string, value: unknown): unknown => {
    if (isUnit(value) || isHost(value)) throw new Unmodelled('JSON.stringify of a UnitValue or a layer');
    return value;
  };
  return {
    undefined,
    NaN: Number.NaN,
    Infinity: Number.POSITIVE_INFINITY,
    Math,
    JSON: Object.freeze({ stringify: (v: unknown) => JSON.stringify(v, refuseHost), parse: (s: string) => JSON.parse(s) as unknown }),
    // Number(UnitValue) is NaN in Photopea's interpreter.
    Number: (v: unknown) => (isUnit(v) ? Number.NaN : Number(v)),
    String: (v: unknown) => {
      if (isUnit(v)) throw new Unmodelled('String(UnitValue)');
      return String(v);
    },
    parseInt,
    parseFloat,
    isNaN,
    isFinite,
  };
}

class Interpreter {
  private steps = 0;
  constructor(private readonly global: Scope) {}

  private step(): void {
    if (++this.steps > INTERPRETER_DEFAULTS.maxSteps) throw new Unmodelled(`more than ${INTERPRETER_DEFAULTS.maxSteps} steps`);
  }

  /** `var` names and function declarations of a body, defined before it runs (ES5 hoisting). */
  hoist(body: readonly Statement[], scope: Scope): void {
    const vars = (node: AnyNode | null | undefined): void => {
      if (node === null || node === undefined) return;
      switch (node.type) {
        case 'VariableDeclaration':
          if (node.kind !== 'var') throw new Unmodelled(`${node.kind} declarations`);
          for (const d of node.declarations) if (d.id.type === 'Identifier' && !scope.vars.has(d.id.name)) scope.vars.set(d.id.name, undefined);
          return;
        case 'BlockStatement':
          for (const s of node.body) vars(s);
          return;
        case 'IfStatement':
          vars(node.consequent);
          vars(node.alternate);
          return;
        case 'ForStatement':
          vars(node.init);
          vars(node.body);
          return;
        case 'WhileStatement':
          vars(node.body);
          return;
        case 'TryStatement':
          vars(node.block);
          vars(node.handler?.body);
          vars(node.finalizer);
          return;
        default:
          return;
      }
    };
    for (const s of body) {
      if (s.type === 'FunctionDeclaration' && s.id !== null) scope.vars.set(s.id.name, new Closure(s, scope));
      else vars(s);
    }
  }

  run(program: Program): void {
    this.hoist(program.body as Statement[], this.global);
    for (const s of program.body as Statement[]) {
      const c = this.exec(s, this.global);
      if (c.kind !== 'normal') throw new Unmodelled(`${c.kind} outside a function or loop`);
    }
  }

  private execBlock(body: readonly Statement[], scope: Scope): Completion {
    for (const s of body) {
      const c = this.exec(s, scope);
      if (c.kind !== 'normal') return c;
    }
    return NORMAL;
  }

  private exec(node: Statement, scope: Scope): Completion {
    this.step();
    switch (node.type) {
      case 'EmptyStatement':
      case 'FunctionDeclaration': // hoisted
        return NORMAL;
      case 'ExpressionStatement':
        this.eval(node.expression, scope);
        return NORMAL;
      case 'VariableDeclaration':
        if (node.kind !== 'var') throw new Unmodelled(`${node.kind} declarations`);
        for (const d of node.declarations) {
          if (d.id.type !== 'Identifier') throw new Unmodelled('destructuring');
          if (d.init !== null && d.init !== undefined) this.assign(d.id.name, this.eval(d.init, scope), scope);
        }
        return NORMAL;
      case 'BlockStatement':
        return this.execBlock(node.body, scope);
      case 'IfStatement':
        if (this.eval(node.test, scope)) return this.exec(node.consequent, scope);
        return node.alternate ? this.exec(node.alternate, scope) : NORMAL;
      case 'ForStatement': {
        if (node.init) {
          if (node.init.type === 'VariableDeclaration') this.exec(node.init, scope);
          else this.eval(node.init, scope);
        }
        for (; node.test ? this.eval(node.test, scope) : true; node.update ? this.eval(node.update, scope) : undefined) {
          const c = this.exec(node.body, scope);
          if (c.kind === 'break') break;
          if (c.kind === 'return') return c;
        }
        return NORMAL;
      }
      case 'WhileStatement':
        while (this.eval(node.test, scope)) {
          const c = this.exec(node.body, scope);
          if (c.kind === 'break') break;
          if (c.kind === 'return') return c;
        }
        return NORMAL;
      case 'ReturnStatement':
        return { kind: 'return', value: node.argument ? this.eval(node.argument, scope) : undefined };
      case 'BreakStatement':
      case 'ContinueStatement':
        if (node.label) throw new Unmodelled('labels');
        return { kind: node.type === 'BreakStatement' ? 'break' : 'continue' };
      case 'ThrowStatement':
        throw new Thrown(this.eval(node.argument, scope));
      case 'TryStatement': {
        // Photopea's interpreter never runs `finalizer`.
        try {
          return this.exec(node.block, scope);
        } catch (err) {
          if (!(err instanceof Thrown) || node.handler === null || node.handler === undefined) throw err;
          const param = node.handler.param;
          if (param !== null && param !== undefined && param.type !== 'Identifier') throw new Unmodelled('destructuring in catch');
          const inner = new Scope(scope);
          if (param) inner.vars.set(param.name, err.value);
          return this.exec(node.handler.body, inner);
        }
      }
      default:
        throw new Unmodelled(node.type);
    }
  }

  private assign(name: string, value: unknown, scope: Scope): void {
    (scope.find(name) ?? this.global).vars.set(name, value);
  }

  private lookup(node: Identifier, scope: Scope): unknown {
    const s = scope.find(node.name);
    if (s === null) throw new Thrown(new ReferenceError(`${node.name} is not defined`));
    return s.vars.get(node.name);
  }

  private key(node: MemberExpression, scope: Scope): string | number {
    if (!node.computed) {
      if (node.property.type !== 'Identifier') throw new Unmodelled('private names');
      return node.property.name;
    }
    const k = this.eval(node.property as Expression, scope);
    if (typeof k === 'number' || typeof k === 'string') return k;
    throw new Unmodelled(`a ${typeof k} as a property key`);
  }

  private object(value: unknown, what: string): Record<string | number, unknown> {
    if (value === null || value === undefined) throw typeError(`Cannot read properties of ${String(value)} (${what})`);
    if (value instanceof Closure) throw new Unmodelled('properties of a function');
    return value as Record<string | number, unknown>;
  }

  private get(node: MemberExpression, scope: Scope): { target: Record<string | number, unknown>; key: string | number; value: unknown } {
    if (node.object.type === 'Super') throw new Unmodelled('super');
    const target = this.object(this.eval(node.object, scope), String(node.computed ? '[…]' : (node.property as Identifier).name));
    const key = this.key(node, scope);
    return { target, key, value: hostCall(() => target[key]) };
  }

  private set(target: Pattern | Expression, value: unknown, scope: Scope): void {
    if (target.type === 'Identifier') this.assign(target.name, value, scope);
    else if (target.type === 'MemberExpression') {
      if (target.object.type === 'Super') throw new Unmodelled('super');
      const obj = this.object(this.eval(target.object, scope), 'assignment');
      const key = this.key(target, scope);
      hostCall(() => (obj[key] = value));
    } else throw new Unmodelled(`assignment to ${target.type}`);
  }

  call(fn: unknown, self: unknown, args: unknown[]): unknown {
    if (fn instanceof Closure) {
      const inner = new Scope(fn.scope);
      fn.node.params.forEach((p, i) => {
        if (p.type !== 'Identifier') throw new Unmodelled('parameter patterns');
        inner.vars.set(p.name, args[i]);
      });
      this.hoist(fn.node.body.body, inner);
      const c = this.execBlock(fn.node.body.body, inner);
      if (c.kind === 'return') return c.value;
      if (c.kind !== 'normal') throw new Unmodelled(`${c.kind} outside a loop`);
      return undefined;
    }
    if (typeof fn !== 'function') throw typeError(`${String(fn)} is not a function`);
    if (args.some((a) => a instanceof Closure)) throw new Unmodelled('a script function passed to a built-in');
    return hostCall(() => (fn as (...a: unknown[]) => unknown).apply(self, args));
  }

  private eval(node: Expression, scope: Scope): unknown {
    this.step();
    switch (node.type) {
      case 'Literal':
        if ('regex' in node && node.regex) throw new Unmodelled('regular expressions');
        return node.value;
      case 'Identifier':
        return this.lookup(node, scope);
      case 'ArrayExpression':
        return node.elements.map((e) => {
          if (e === null || e.type === 'SpreadElement') throw new Unmodelled('holes and spread in arrays');
          return this.eval(e, scope);
        });
      case 'ObjectExpression': {
        const out: Record<string, unknown> = {};
        for (const p of node.properties) {
          if (p.type !== 'Property' || p.kind !== 'init' || p.computed || p.method || p.shorthand) throw new Unmodelled('object literal forms other than key: value');
          const k = p.key.type === 'Identifier' ? p.key.name : p.key.type === 'Literal' ? String(p.key.value) : null;
          if (k === null) throw new Unmodelled('object keys');
          out[k] = this.eval(p.value as Expression, scope);
        }
        return out;
      }
      case 'FunctionExpression':
        // Photopea's interpreter gives a function expression no value.
        return undefined;
      case 'SequenceExpression': {
        let v: unknown;
        for (const e of node.expressions) v = this.eval(e, scope);
        return v;
      }
      case 'UnaryExpression': {
        if (node.operator === 'typeof' && node.argument.type === 'Identifier' && scope.find(node.argument.name) === null) return 'undefined';
        const v = this.eval(node.argument, scope);
        if (node.operator === '!') return !v;
        if (node.operator === 'typeof') return v instanceof Closure ? 'function' : typeof v;
        if (isUnit(v) || isHost(v)) throw new Unmodelled(`unary ${node.operator} on a UnitValue or a layer`);
        if (node.operator === '-') return -(v as number);
        if (node.operator === '+') return +(v as number);
        throw new Unmodelled(`unary ${node.operator}`);
      }
      case 'UpdateExpression': {
        const old = this.eval(node.argument, scope);
        if (typeof old !== 'number') throw new Unmodelled(`${node.operator} on a ${typeof old}`);
        const next = node.operator === '++' ? old + 1 : old - 1;
        this.set(node.argument, next, scope);
        return node.prefix ? next : old;
      }
      case 'BinaryExpression': {
        if (node.left.type === 'PrivateIdentifier') throw new Unmodelled('private names');
        return binary(node.operator, this.eval(node.left, scope), this.eval(node.right, scope));
      }
      case 'LogicalExpression': {
        const l = this.eval(node.left, scope);
        if (node.operator === '&&') return l ? this.eval(node.right, scope) : l;
        if (node.operator === '||') return l ? l : this.eval(node.right, scope);
        throw new Unmodelled(node.operator);
      }
      case 'ConditionalExpression':
        return this.eval(node.test, scope) ? this.eval(node.consequent, scope) : this.eval(node.alternate, scope);
      case 'AssignmentExpression': {
        let value: unknown;
        if (node.operator === '=') value = this.eval(node.right, scope);
        else {
          const op = node.operator.slice(0, -1);
          if (!['+', '-', '*', '/', '%'].includes(op)) throw new Unmodelled(node.operator);
          value = binary(op, this.eval(node.left as Expression, scope), this.eval(node.right, scope));
        }
        this.set(node.left, value, scope);
        return value;
      }
      case 'MemberExpression':
        return this.get(node, scope).value;
      case 'CallExpression': {
        if (node.callee.type === 'Super') throw new Unmodelled('super');
        const args = node.arguments.map((a) => {
          if (a.type === 'SpreadElement') throw new Unmodelled('spread arguments');
          return this.eval(a, scope);
        });
        if (node.callee.type === 'MemberExpression') {
          const { target, value } = this.get(node.callee, scope);
          return this.call(value, target, args);
        }
        return this.call(this.eval(node.callee, scope), undefined, args);
      }
      default:
        throw new Unmodelled(node.type);
    }
  }
}

/** A property read, write or call of a host object: what it throws, the script can catch. */
function hostCall<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof Unmodelled || err instanceof Thrown) throw err;
    throw new Thrown(err);
  }
}

/** A binary operator as Photopea's interpreter applies it. */
function binary(op: string, a: unknown, b: unknown): unknown {
  if (op === '==') {
    if (isHost(a) && isHost(b)) return a[UNDERLYING] === b[UNDERLYING];
    if (isUnit(a) || isUnit(b)) throw new Unmodelled('== with a UnitValue');
    return a == b;
  }
  // `!=`, `===` and `!==` compare wrappers: fresh objects, so never equal [pp.js].
  if (op === '!=' || op === '===' || op === '!==') {
    if (isUnit(a) || isUnit(b)) throw new Unmodelled(`${op} with a UnitValue`);
    return op === '!=' ? a != b : op === '===' ? a === b : a !== b;
  }
  if (isUnit(a) || isUnit(b)) {
    // number − UnitValue comes out negated [pp.js]; every other mix is unknown.
    if (op === '-' && typeof a === 'number' && isUnit(b)) return b.value - a;
    throw new Unmodelled(`${typeof a === 'number' ? 'number' : isUnit(a) ? 'UnitValue' : typeof a} ${op} ${isUnit(b) ? 'UnitValue' : typeof b}`);
  }
  if (isHost(a) || isHost(b)) throw new Unmodelled(`${op} on a layer`);
  const x = a as number;
  const y = b as number;
  switch (op) {
    case '+':
      return (a as string) + (b as string);
    case '-':
      return x - y;
    case '*':
      return x * y;
    case '/':
      return x / y;
    case '%':
      return x % y;
    case '<':
      return x < y;
    case '>':
      return x > y;
    case '<=':
      return x <= y;
    case '>=':
      return x >= y;
    default:
      throw new Unmodelled(`operator ${op}`);
  }
}

/**
 * Runs a script as Photopea would: `#` lines blanked, parsed by acorn, walked by the model above with
 * `globals` (the host's `app`, …) besides the built-ins. Never throws: a script that throws (or that
 * uses what the model refuses) ends with `error` set.
 */
export function interpretPhotopeaScript(source: string, globals: Record<string, unknown>): ScriptOutcome {
  let program: Program;
  try {
    program = parse(blankHashLines(source), { ecmaVersion: 2020, sourceType: 'script' });
  } catch (err) {
    return { error: `SyntaxError: ${(err as Error).message}`, unmodelled: false };
  }
  const global = new Scope(null);
  for (const [k, v] of Object.entries({ ...builtins(), ...globals })) global.vars.set(k, v);
  try {
    new Interpreter(global).run(program);
    return { error: null, unmodelled: false };
  } catch (err) {
    if (err instanceof Unmodelled) return { error: err.message, unmodelled: true };
    if (err instanceof Thrown) return { error: String(err.value), unmodelled: false };
    return { error: `interpreter: ${String(err)}`, unmodelled: true };
  }
}
