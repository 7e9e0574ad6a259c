// Test fixture: a JavaScript plugin that misbehaves in `pre-request` (or in
// `init`), to check the host contains it.
//
// Config `mode` (string): `loop` spins forever; `bomb` allocates and keeps
// 1 MiB arrays (every byte written) until memory runs out; `throw` throws;
// `ok` continues. `in_init` (boolean): misbehave in `init` instead.

import { Plugin, PreAction, exportPlugin } from "../../../plugin-sdk/js/plugbox.js";

const kept = [];

function misbehave(mode) {
  switch (mode) {
    case "loop":
      for (;;) {}
    case "bomb":
      for (;;) kept.push(new Uint8Array(1 << 20).fill(7));
    case "throw":
      throw new Error("hostile fixture threw on purpose");
    default:
      return;
  }
}

class Hostile extends Plugin {
  constructor(config) {
    super(config);
    this.mode = config.getString("mode", "ok");
    if (config.getBoolean("in_init", false)) misbehave(this.mode);
  }
  preRequest(_req) {
    misbehave(this.mode);
    return PreAction.continue();
  }
}

export const { lifecycle, requestHooks, streamHooks, toolHooks, provider, deviceHooks, deviceProbe, endpoint } =
  exportPlugin(Hostile);
