// Test fixture: a JavaScript plugin that tries, in `pre-request`, to reach
// what a plugin is not granted by default, through the WASI interfaces a
// module can import directly. Each op's outcome goes into the request
// context under the op's name (`<op>#2`, `<op>#3` ... when it repeats):
// `ok:<what it got>` or `err:<why not>`.
//
// Config `ops` (array of strings):
// - `preopens`: the guest paths of the directories it was given;
// - `envs`: the environment variables it sees;
// - `read:<path>`: read a file through the preopen whose guest path starts `path`;
// - `http:<url>`: an outgoing HTTP GET through wasi:http;
// - `kv-get:<key>`: a kv read (the text of the value, or `none`);
// - `kv-set:<key>=<value>` (with a 60 s TTL), `kv-del:<key>`, `kv-incr:<key>`
//   (adds 5), `kv-cas:<key>=<old>=<new>`: the other kv calls.

import { getDirectories } from "wasi:filesystem/preopens@0.2.12";
import { getEnvironment } from "wasi:cli/environment@0.2.12";
import { handle } from "wasi:http/outgoing-handler@0.2.12";
import { Fields, OutgoingRequest } from "wasi:http/types@0.2.12";
import { Plugin, PreAction, context, exportPlugin, kv } from "../../../plugin-sdk/js/plugbox.js";

function why(e) {
  if (e && e.payload !== undefined) return JSON.stringify(e.payload);
  return e instanceof Error ? e.message : String(e);
}

function read(path) {
  for (const [dir, guest] of getDirectories()) {
    const prefix = guest.endsWith("/") ? guest : guest + "/";
    if (!path.startsWith(prefix)) continue;
    const file = dir.openAt({}, path.slice(prefix.length), {}, { read: true });
    const [bytes] = file.read(BigInt(1 << 16), 0n);
    return new TextDecoder().decode(bytes);
  }
  throw new Error(`no preopened directory holds \`${path}\``);
}

function http(url) {
  const u = new URL(url);
  const req = new OutgoingRequest(new Fields());
  req.setScheme({ tag: u.protocol === "https:" ? "HTTPS" : "HTTP" });
  req.setAuthority(u.host);
  req.setPathWithQuery(u.pathname + u.search);
  const future = handle(req, undefined);
  future.subscribe().block();
  const got = future.get();
  if (got === undefined) throw new Error("no response");
  // option<result<result<incoming-response, error-code>>>: the inner result says what happened.
  const outcome = got.tag === "ok" ? got.val : got;
  if (outcome.tag === "err") throw { payload: outcome.val };
  return `status ${outcome.val.status()}`;
}

function run(op) {
  if (op === "preopens") return getDirectories().map(([, guest]) => guest).join(",");
  if (op === "envs") return getEnvironment().map(([k]) => k).join(",");
  if (op.startsWith("read:")) return read(op.slice(5));
  if (op.startsWith("http:")) return http(op.slice(5));
  if (op.startsWith("kv-get:")) {
    const value = kv.get(op.slice(7));
    return value === undefined ? "none" : new TextDecoder().decode(value);
  }
  if (op.startsWith("kv-set:")) {
    const [key, value] = op.slice(7).split("=");
    kv.set(key, value, 60000); // a string: stored as its UTF-8 bytes
    return "set";
  }
  if (op.startsWith("kv-del:")) return String(kv.delete(op.slice(7)));
  if (op.startsWith("kv-incr:")) return String(kv.increment(op.slice(8), 5));
  if (op.startsWith("kv-cas:")) {
    const [key, old, value] = op.slice(7).split("=");
    const enc = new TextEncoder();
    return String(kv.compareAndSwap(key, old === "" ? undefined : enc.encode(old), enc.encode(value)));
  }
  throw new Error(`unknown op \`${op}\``);
}

class Probe extends Plugin {
  constructor(config) {
    super(config);
    this.ops = config.get("ops") ?? [];
  }
  preRequest(_req) {
    const seen = new Map();
    for (const op of this.ops) {
      const n = (seen.get(op) ?? 0) + 1;
      seen.set(op, n);
      let outcome;
      try {
        outcome = `ok:${run(op)}`;
      } catch (e) {
        outcome = `err:${why(e)}`;
      }
      context.set(n === 1 ? op : `${op}#${n}`, outcome);
    }
    return PreAction.continue();
  }
}

export const { lifecycle, requestHooks, streamHooks, toolHooks, provider, deviceHooks, deviceProbe, endpoint } =
  exportPlugin(Probe);
