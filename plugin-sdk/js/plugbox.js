// plugbox.js: write plugbox plugins in JavaScript.
//
// A plugin is one class extending `Plugin` with a method for each hook it
// needs; `exportPlugin(MyPlugin)` turns it into the exports of the
// `plugbox:plugin/plugin@0.2.0` world, which componentize-js builds into a
// WebAssembly component:
//
//     import { Plugin, PreAction, exportPlugin } from "./plugbox.js";
//
//     class Hello extends Plugin {
//       constructor(config) {
//         super(config);
//         this.prompt = config.requireString("prompt");
//       }
//       preRequest(req) {
//         req.insertMessage(0, "system", this.prompt);
//         return PreAction.continue();
//       }
//     }
//
//     export const { lifecycle, requestHooks, streamHooks, toolHooks, provider,
//       deviceHooks, deviceProbe, endpoint } = exportPlugin(Hello);
//
// Build (the WIT directory is the host's `wit/`, see docs/languages-js.md):
//
//     componentize-js plugin.js --wit wit --world-name plugin \
//       --disable http fetch-event -o plugin.wasm
//
// The shape mirrors the Rust SDK (plugin-sdk/src): handles (`Request`,
// `Response`, `Chunk`, `StreamEnd`, `ToolCallRef`) read only what they are
// asked for from data the host owns; an edit the manifest's
// `permissions.messages` does not allow throws an `AccessError`. A hook that
// throws fails (its `on-error` policy applies) with the error's message; a
// deliberate refusal is an action (`PreAction.fail(LlmError.rateLimited(...))`).
// Every interface of the world is exported with a default, but the host calls
// only the hooks the manifest's `hooks` names.

import { log as hostLog } from "plugbox:plugin/log@0.2.0";
import * as hostContext from "plugbox:plugin/context@0.2.0";
import * as hostKv from "plugbox:plugin/kv@0.2.0";
import * as hostDevices from "plugbox:plugin/devices@0.2.0";

/** The roles of `types.role`, as the strings the handles take and give. */
export const Role = Object.freeze({
  system: "system",
  developer: "developer",
  user: "user",
  assistant: "assistant",
  tool: "tool",
  function: "function",
  other: "other",
});

/** The kinds of `types.error-kind`. */
export const ErrorKind = Object.freeze({
  invalidRequest: "invalid-request",
  authentication: "authentication",
  permissionDenied: "permission-denied",
  notFound: "not-found",
  rateLimited: "rate-limited",
  timeout: "timeout",
  contentFiltered: "content-filtered",
  provider: "provider",
  internal: "internal",
});

// ---------------------------------------------------------------- errors

/**
 * The host refused a read or an edit (`types.access-error`): `kind` is
 * `denied`, `out-of-range`, `invalid` or `too-large`; `detail` the host's text
 * (it names the JSON path). A refused edit leaves the data unchanged.
 */
export class AccessError extends Error {
  constructor(kind, detail) {
    super(accessMessage(kind, detail));
    this.name = "AccessError";
    this.kind = kind;
    this.detail = detail;
  }
}

function accessMessage(kind, detail) {
  switch (kind) {
    case "denied":
      return `access denied: ${detail}`;
    case "out-of-range":
      return "index out of range";
    case "invalid":
      return `invalid value: ${detail}`;
    case "too-large":
      return "the edit exceeds the plugin's output budget (`limits.max-output`)";
    default:
      return `${kind}: ${detail}`;
  }
}

/** A `kv` call failed (`kv.kv-error`): `kind` is `denied`, `not-a-number` or `other`. */
export class KvError extends Error {
  constructor(kind, detail) {
    super(
      kind === "denied"
        ? "kv access denied (the manifest does not grant `permissions.kv`)"
        : kind === "not-a-number"
          ? "the stored value is not an integer"
          : `kv: ${detail}`,
    );
    this.name = "KvError";
    this.kind = kind;
    this.detail = detail;
  }
}

// Calls a host function whose WIT result is `result<_, access-error>`.
function access(f) {
  try {
    return f();
  } catch (e) {
    const p = e && e.payload;
    if (p && typeof p.tag === "string") throw new AccessError(p.tag, p.val);
    throw e;
  }
}

function kvCall(f) {
  try {
    return f();
  } catch (e) {
    const p = e && e.payload;
    if (p && typeof p.tag === "string") throw new KvError(p.tag, p.val);
    throw e;
  }
}

/** An error a hook or provider reports on purpose (`types.llm-error`). */
export class LlmError {
  /**
   * @param {string} kind one of `ErrorKind`
   * @param {string} message
   * @param {{allowFallback?: boolean, retryAfterMs?: number}} [options]
   */
  constructor(kind, message, { allowFallback = false, retryAfterMs } = {}) {
    this.kind = kind;
    this.message = String(message);
    this.allowFallback = allowFallback;
    this.retryAfterMs = retryAfterMs;
  }
  /** `rate-limited`, the caller may retry after `retryAfterMs`; no fallback. */
  static rateLimited(message, retryAfterMs) {
    return new LlmError("rate-limited", message, { retryAfterMs: Math.max(0, Math.ceil(retryAfterMs)) });
  }
  static invalidRequest(message) {
    return new LlmError("invalid-request", message);
  }
  static authentication(message) {
    return new LlmError("authentication", message);
  }
  static permissionDenied(message) {
    return new LlmError("permission-denied", message);
  }
  static notFound(message) {
    return new LlmError("not-found", message);
  }
  static timeout(message) {
    return new LlmError("timeout", message, { allowFallback: true });
  }
  static contentFiltered(message) {
    return new LlmError("content-filtered", message);
  }
  static provider(message) {
    return new LlmError("provider", message, { allowFallback: true });
  }
  static internal(message) {
    return new LlmError("internal", message);
  }
  /** The same error with `allowFallback` set. */
  withFallback(allow = true) {
    return new LlmError(this.kind, this.message, { allowFallback: allow, retryAfterMs: this.retryAfterMs });
  }
  /** The same error with a retry hint. */
  withRetryAfter(retryAfterMs) {
    return new LlmError(this.kind, this.message, {
      allowFallback: this.allowFallback,
      retryAfterMs: Math.max(0, Math.ceil(retryAfterMs)),
    });
  }
  /** The WIT record. */
  toWit() {
    return {
      kind: this.kind,
      message: this.message,
      allowFallback: !!this.allowFallback,
      retryAfterMs: this.retryAfterMs === undefined || this.retryAfterMs === null ? undefined : BigInt(this.retryAfterMs),
    };
  }
  static fromWit(e) {
    return new LlmError(e.kind, e.message, {
      allowFallback: e.allowFallback,
      retryAfterMs: e.retryAfterMs === undefined ? undefined : Number(e.retryAfterMs),
    });
  }
}

// ---------------------------------------------------------------- actions

function json(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** What `preRequest` decides. `respond` takes a `chat.completion` (object or JSON). */
export const PreAction = Object.freeze({
  continue: () => ({ tag: "continue" }),
  respond: (completion) => ({ tag: "respond", val: json(completion) }),
  fail: (error) => ({ tag: "fail", val: error }),
});

/** What `postResponse` decides. */
export const PostAction = PreAction;

/** What `onChunk` decides for one chunk. */
export const ChunkAction = Object.freeze({
  continue: () => ({ tag: "continue" }),
  drop: () => ({ tag: "drop" }),
  hold: () => ({ tag: "hold" }),
  fail: (error) => ({ tag: "fail", val: error }),
});

/** What `onToolCall` decides. `answer` takes the tool's result (JSON-encoded, or a value to encode). */
export const ToolAction = Object.freeze({
  allow: () => ({ tag: "allow" }),
  deny: (reason) => ({ tag: "deny", val: String(reason) }),
  answer: (result) => ({ tag: "answer", val: json(result) }),
});

// Lowers an action: an `LlmError` inside `fail` becomes its WIT record.
function lowerAction(action, hook) {
  if (!action || typeof action.tag !== "string") {
    throw new Error(`\`${hook}\` must return an action (e.g. PreAction.continue()), got ${String(action)}`);
  }
  if (action.tag === "fail") {
    const e = action.val instanceof LlmError ? action.val : new LlmError("internal", String(action.val));
    return { tag: "fail", val: e.toWit() };
  }
  return action;
}

// ---------------------------------------------------------------- completions

let counter = 0;

/** A fresh completion id: `chatcmpl-plugbox-<time><counter>` in hex. */
export function completionId() {
  counter += 1;
  return `chatcmpl-plugbox-${Date.now().toString(16)}${counter.toString(16)}`;
}

/**
 * A `chat.completion` body with one assistant choice saying `text`.
 * @param {string} model
 * @param {string} text
 * @param {{promptTokens?: number, completionTokens?: number}} [usage]
 */
export function completion(model, text, usage) {
  const body = {
    id: completionId(),
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" }],
  };
  if (usage) {
    const p = usage.promptTokens ?? 0;
    const c = usage.completionTokens ?? 0;
    body.usage = { prompt_tokens: p, completion_tokens: c, total_tokens: p + c };
  }
  return body;
}

// ---------------------------------------------------------------- config

/**
 * The plugin's effective config (manifest defaults merged with the operator's
 * values), with typed getters whose errors name the key.
 */
export class Config {
  constructor(values) {
    /** The raw object. */
    this.values = values ?? {};
  }
  static fromJson(text) {
    const v = text && text.trim() ? JSON.parse(text) : {};
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      throw new Error(`the config must be a JSON object, got ${text}`);
    }
    return new Config(v);
  }
  has(key) {
    return Object.prototype.hasOwnProperty.call(this.values, key) && this.values[key] !== null;
  }
  get(key) {
    return this.has(key) ? this.values[key] : undefined;
  }
  /** A string, or `fallback` when absent. */
  getString(key, fallback) {
    if (!this.has(key)) return fallback;
    const v = this.values[key];
    if (typeof v !== "string") throw wrongType(key, "a string", v);
    return v;
  }
  /** A string that must be there. */
  requireString(key) {
    if (!this.has(key)) throw new Error(`config \`${key}\` is required`);
    return this.getString(key);
  }
  /** A number, or `fallback` when absent. */
  getNumber(key, fallback) {
    if (!this.has(key)) return fallback;
    const v = this.values[key];
    if (typeof v !== "number" || !Number.isFinite(v)) throw wrongType(key, "a number", v);
    return v;
  }
  /** An integer, or `fallback` when absent. */
  getInteger(key, fallback) {
    if (!this.has(key)) return fallback;
    const v = this.values[key];
    if (!Number.isInteger(v)) throw wrongType(key, "an integer", v);
    return v;
  }
  /** A boolean, or `fallback` when absent. */
  getBoolean(key, fallback) {
    if (!this.has(key)) return fallback;
    const v = this.values[key];
    if (typeof v !== "boolean") throw wrongType(key, "a boolean", v);
    return v;
  }
}

function wrongType(key, expected, got) {
  return new Error(`config \`${key}\` must be ${expected}, got \`${JSON.stringify(got)}\``);
}

// ---------------------------------------------------------------- handles

/**
 * A chat completion request (a `borrow<request>`, valid during the hook
 * call). JSON-valued reads and edits take and give plain values.
 */
export class Request {
  constructor(handle) {
    this.handle = handle;
  }
  /** The request id. */
  id() {
    return this.handle.id();
  }
  /** The caller's identity, or `undefined`. */
  caller() {
    return this.handle.caller() ?? undefined;
  }
  /** The caller's identity, or `fallback`. */
  callerOr(fallback) {
    return this.handle.caller() ?? fallback;
  }
  provider() {
    return this.handle.provider();
  }
  streaming() {
    return this.handle.streaming();
  }
  model() {
    return this.handle.model();
  }
  setModel(model) {
    access(() => this.handle.setModel(model));
  }
  messageCount() {
    return this.handle.messageCount();
  }
  /** The role of message `index` (a `Role` string). */
  role(index) {
    return access(() => this.handle.role(index));
  }
  /** `[index, role]` of every message, in order (free to read at every access level). */
  *messages() {
    const n = this.handle.messageCount();
    for (let i = 0; i < n; i++) yield [i, this.role(i)];
  }
  /** The text of message `index`, or `undefined` when it has none. */
  text(index) {
    return access(() => this.handle.text(index)) ?? undefined;
  }
  setText(index, text) {
    access(() => this.handle.setText(index, text));
  }
  /** Message `index` as an OpenAI message object. */
  message(index) {
    return JSON.parse(access(() => this.handle.messageJson(index)));
  }
  /** Inserts a text message before `index` (`index` = count appends). */
  insertMessage(index, role, text) {
    access(() => this.handle.insertMessage(index, role, text));
  }
  /** Inserts an OpenAI message (object or JSON) before `index`. */
  insertMessageJson(index, message) {
    access(() => this.handle.insertMessageJson(index, json(message)));
  }
  removeMessage(index) {
    access(() => this.handle.removeMessage(index));
  }
  toolCount() {
    return this.handle.toolCount();
  }
  /** The `tools` array. */
  tools() {
    return JSON.parse(access(() => this.handle.toolsJson()));
  }
  /** A top-level field (`temperature`, ...) as a value, `undefined` when absent. */
  param(name) {
    const v = access(() => this.handle.param(name));
    return v === undefined || v === null ? undefined : JSON.parse(v);
  }
  /** Sets a top-level field; `undefined` removes it. */
  setParam(name, value) {
    access(() => this.handle.setParam(name, value === undefined ? undefined : JSON.stringify(value)));
  }
  /** The whole body (needs `read`). */
  toJson() {
    return JSON.parse(access(() => this.handle.toJson()));
  }
}

/** A chat completion response, or the error the request failed with. */
export class Response {
  constructor(handle) {
    this.handle = handle;
  }
  /** The `LlmError` the request failed with, or `undefined`. */
  error() {
    const e = this.handle.error();
    return e ? LlmError.fromWit(e) : undefined;
  }
  id() {
    return this.handle.id();
  }
  model() {
    return this.handle.model();
  }
  choiceCount() {
    return this.handle.choiceCount();
  }
  text(index) {
    return access(() => this.handle.text(index)) ?? undefined;
  }
  setText(index, text) {
    access(() => this.handle.setText(index, text));
  }
  refusal(index) {
    return access(() => this.handle.refusal(index)) ?? undefined;
  }
  finishReason(index) {
    return access(() => this.handle.finishReason(index)) ?? undefined;
  }
  /** `[{id, name, arguments}]` of choice `index`. */
  toolCalls(index) {
    return access(() => this.handle.toolCalls(index));
  }
  usage() {
    return this.handle.usage() ?? undefined;
  }
  param(name) {
    const v = access(() => this.handle.param(name));
    return v === undefined || v === null ? undefined : JSON.parse(v);
  }
  setParam(name, value) {
    access(() => this.handle.setParam(name, value === undefined ? undefined : JSON.stringify(value)));
  }
  toJson() {
    return JSON.parse(access(() => this.handle.toJson()));
  }
}

/** One chunk of a streamed response. */
export class Chunk {
  constructor(handle) {
    this.handle = handle;
  }
  choiceCount() {
    return this.handle.choiceCount();
  }
  text(index) {
    return access(() => this.handle.text(index)) ?? undefined;
  }
  setText(index, text) {
    access(() => this.handle.setText(index, text));
  }
  reasoning(index) {
    return access(() => this.handle.reasoning(index)) ?? undefined;
  }
  refusal(index) {
    return access(() => this.handle.refusal(index)) ?? undefined;
  }
  role(index) {
    return access(() => this.handle.role(index)) ?? undefined;
  }
  /** `[{index, id?, name?, arguments?}]` of choice `index`. */
  toolCalls(index) {
    return access(() => this.handle.toolCalls(index));
  }
  finishReason(index) {
    return access(() => this.handle.finishReason(index)) ?? undefined;
  }
  usage() {
    return this.handle.usage() ?? undefined;
  }
  toJson() {
    return JSON.parse(access(() => this.handle.toJson()));
  }
  /** True for held text offered once more at the end of the stream. */
  last() {
    return this.handle.last();
  }
}

/** The end of a stream. */
export class StreamEnd {
  constructor(handle) {
    this.handle = handle;
  }
  usage() {
    return this.handle.usage() ?? undefined;
  }
  /** Appends a chunk with this content delta (needs `write`). */
  appendText(text) {
    access(() => this.handle.appendText(text));
  }
  /** Appends a `chat.completion.chunk` (object or JSON; needs `write`). */
  appendJson(chunk) {
    access(() => this.handle.appendJson(json(chunk)));
  }
}

/** A tool call the model asked for. */
export class ToolCallRef {
  constructor(handle) {
    this.handle = handle;
  }
  id() {
    return this.handle.id();
  }
  name() {
    return this.handle.name();
  }
  /** The arguments as a value (needs `read`). */
  arguments() {
    return JSON.parse(access(() => this.handle.arguments()));
  }
  /** Replaces the arguments (an object; needs `write`). */
  setArguments(args) {
    access(() => this.handle.setArguments(json(args)));
  }
  setName(name) {
    access(() => this.handle.setName(name));
  }
}

// ---------------------------------------------------------------- host imports

/** Logging through the host, tagged with the plugin's name. */
export const log = Object.freeze({
  trace: (message) => hostLog("trace", String(message)),
  debug: (message) => hostLog("debug", String(message)),
  info: (message) => hostLog("info", String(message)),
  warn: (message) => hostLog("warn", String(message)),
  error: (message) => hostLog("error", String(message)),
});

/** The current request's key/value map, shared by the plugins of one request. */
export const context = Object.freeze({
  get: (key) => hostContext.get(key) ?? undefined,
  set: (key, value) => hostContext.set(key, String(value)),
  remove: (key) => hostContext.remove(key),
});

function bytes(value) {
  if (value === undefined || value === null) return undefined;
  return typeof value === "string" ? new TextEncoder().encode(value) : value;
}

function ttl(ttlMs) {
  return ttlMs === undefined || ttlMs === null ? undefined : BigInt(Math.max(0, Math.ceil(ttlMs)));
}

/**
 * The plugin's private key/value store (needs `permissions.kv: true`; else
 * every call throws a `KvError` of kind `denied`). Values are `Uint8Array`s
 * (a string given is stored as its UTF-8 bytes); TTLs are in milliseconds.
 */
export const kv = Object.freeze({
  get: (key) => kvCall(() => hostKv.get(key)) ?? undefined,
  set: (key, value, ttlMs) => kvCall(() => hostKv.set(key, bytes(value), ttl(ttlMs))),
  delete: (key) => kvCall(() => hostKv["delete"](key)),
  /** Adds `delta` to an integer value (missing = 0); returns the result as a number. */
  increment: (key, delta, ttlMs) => Number(kvCall(() => hostKv.increment(key, BigInt(delta), ttl(ttlMs)))),
  /** Replaces the value if it still equals `expected` (`undefined` = absent). */
  compareAndSwap: (key, expected, value, ttlMs) =>
    kvCall(() => hostKv.compareAndSwap(key, bytes(expected), bytes(value), ttl(ttlMs))),
});

/** The host's device reports (after device hooks). */
export const devices = Object.freeze({
  list: () => hostDevices.list(),
});

// ---------------------------------------------------------------- the plugin

/**
 * The base class of a plugin. The constructor gets the `Config`; override the
 * hooks the manifest names. The defaults match the Rust SDK's.
 */
export class Plugin {
  constructor(config) {
    this.config = config;
  }
  /** When the plugin is unloaded or replaced. */
  shutdown() {}
  preRequest(_req) {
    return PreAction.continue();
  }
  postResponse(_req, _resp) {
    return PostAction.continue();
  }
  onChunk(_req, _chunk) {
    return ChunkAction.continue();
  }
  onStreamEnd(_req, _end) {}
  onToolCall(_req, _call) {
    return ToolAction.allow();
  }
  /** `provider`: the provider type; empty: not a provider. */
  providerType() {
    return "";
  }
  /** `provider`: a `chat.completion` (object or JSON) for `req`, or throw an `LlmError`. */
  complete(_req) {
    throw LlmError.internal("this plugin is not a provider (it does not implement `complete`)");
  }
  /**
   * `provider`: the chunks of a streamed answer: an iterable of
   * `chat.completion.chunk` objects (or JSON strings), pulled one by one as
   * the client takes them. It must not keep `req`. The default streams
   * `complete(req)` as one content chunk and a finish chunk.
   */
  startStream(req) {
    const body = this.complete(req);
    return chunksOf(typeof body === "string" ? JSON.parse(body) : body);
  }
  /** `device-hooks`: adjust the host's device reports. */
  onDeviceProbe(reports) {
    return reports;
  }
  /** `device-probe`: the devices this plugin sees. */
  probe() {
    return [];
  }
  /** `endpoint`: the model mode. */
  mode() {
    return "";
  }
  supportedEndpoints() {
    return [];
  }
  /** `endpoint`: throw (a string or an Error) to refuse `path` for `modelAlias`. */
  validateRequest(path, _modelAlias) {
    throw new Error(`this plugin does not implement the endpoint interface, so it cannot accept \`${path}\``);
  }
  /** `endpoint`: `{healthy, message}`. */
  healthCheck(_modelAlias, _baseUrl, _elapsedMs, _timeoutMs) {
    return { healthy: false, message: "this plugin does not implement health checks" };
  }
}

/** The chunks streaming a whole `chat.completion`. */
export function* chunksOf(body) {
  const base = { id: body.id, object: "chat.completion.chunk", created: body.created, model: body.model };
  for (const choice of body.choices ?? []) {
    const msg = choice.message ?? {};
    const delta = { role: "assistant" };
    if (msg.content !== undefined && msg.content !== null) delta.content = msg.content;
    if (msg.tool_calls) delta.tool_calls = msg.tool_calls.map((c, index) => ({ index, ...c }));
    yield { ...base, choices: [{ index: choice.index ?? 0, delta, finish_reason: null }] };
    yield { ...base, choices: [{ index: choice.index ?? 0, delta: {}, finish_reason: choice.finish_reason ?? "stop" }] };
  }
  if (body.usage) yield { ...base, choices: [], usage: body.usage };
}

// The message a hook's `err` carries for a thrown value.
function failure(e) {
  if (e instanceof Error) return e.message;
  if (typeof e === "string") return e;
  if (e instanceof LlmError) return `${e.kind}: ${e.message}`;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

// Runs a hook whose WIT result is `result<T, string>`.
function guarded(f) {
  try {
    return f();
  } catch (e) {
    throw failure(e);
  }
}

// Runs a provider call whose WIT result is `result<T, llm-error>`.
function providerCall(f) {
  try {
    return f();
  } catch (e) {
    const err = e instanceof LlmError ? e : LlmError.internal(failure(e));
    throw err.toWit();
  }
}

function report(r) {
  return { ...r, memoryTotalMb: BigInt(r.memoryTotalMb ?? 0), memoryFreeMb: BigInt(r.memoryFreeMb ?? 0), memoryUsedMb: BigInt(r.memoryUsedMb ?? 0), annotations: r.annotations ?? [] };
}

/**
 * The exports of the `plugin` world for `PluginClass`: destructure them into
 * the module's exports (see the top of this file). One instance of the class
 * is made by `init` with the config; every hook runs on it.
 */
export function exportPlugin(PluginClass) {
  let plugin = null;
  const the = () => {
    if (plugin === null) throw new Error("the plugin was not initialised (`init` did not run or failed)");
    return plugin;
  };

  class ChunkStream {
    constructor(iterator) {
      this.iterator = iterator;
    }
    next() {
      return providerCall(() => {
        const step = this.iterator.next();
        return step.done ? undefined : json(step.value);
      });
    }
  }

  return {
    lifecycle: {
      init(configJson) {
        guarded(() => {
          plugin = new PluginClass(Config.fromJson(configJson));
        });
      },
      shutdown() {
        if (plugin !== null) {
          try {
            plugin.shutdown();
          } catch (_) {
            // Nothing to report to: the instance is going away.
          }
        }
      },
    },
    requestHooks: {
      preRequest: (req) => guarded(() => lowerAction(the().preRequest(new Request(req)), "preRequest")),
      postResponse: (req, resp) =>
        guarded(() => lowerAction(the().postResponse(new Request(req), new Response(resp)), "postResponse")),
    },
    streamHooks: {
      onChunk: (req, chunk) => guarded(() => lowerAction(the().onChunk(new Request(req), new Chunk(chunk)), "onChunk")),
      onStreamEnd: (req, end) =>
        guarded(() => {
          the().onStreamEnd(new Request(req), new StreamEnd(end));
        }),
    },
    toolHooks: {
      onToolCall: (req, call) =>
        guarded(() => lowerAction(the().onToolCall(new Request(req), new ToolCallRef(call)), "onToolCall")),
    },
    provider: {
      ChunkStream,
      providerType: () => the().providerType(),
      complete: (req) => providerCall(() => json(the().complete(new Request(req)))),
      startStream: (req) =>
        providerCall(() => {
          const chunks = the().startStream(new Request(req));
          return new ChunkStream(chunks[Symbol.iterator]());
        }),
    },
    deviceHooks: {
      onDeviceProbe: (reports) => guarded(() => the().onDeviceProbe(reports).map(report)),
    },
    deviceProbe: {
      probe: () => guarded(() => the().probe().map(report)),
    },
    endpoint: {
      mode: () => the().mode(),
      supportedEndpoints: () => the().supportedEndpoints(),
      validateRequest: (path, modelAlias) =>
        guarded(() => {
          the().validateRequest(path, modelAlias);
        }),
      healthCheck: (modelAlias, baseUrl, elapsedMs, timeoutMs) =>
        the().healthCheck(modelAlias, baseUrl, Number(elapsedMs), Number(timeoutMs)),
    },
  };
}
