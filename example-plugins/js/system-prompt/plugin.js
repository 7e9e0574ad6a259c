// Inserts a system message into every request, unless an identical system
// message is already there. The JavaScript port of example-plugins/system-prompt.
//
// Config: `prompt` (string, required): the system message;
// `position` (string, `first` by default): `first` puts it before every
// other message, `after-system` after the request's own leading system
// messages, `last` at the end of the conversation.

import { Plugin, PreAction, Role, exportPlugin } from "../../../plugin-sdk/js/plugbox.js";

const POSITIONS = ["first", "after-system", "last"];

class SystemPrompt extends Plugin {
  constructor(config) {
    super(config);
    this.prompt = config.requireString("prompt");
    if (this.prompt.trim() === "") throw new Error("config `prompt` must not be empty");
    this.position = config.getString("position", "first");
    if (!POSITIONS.includes(this.position)) {
      throw new Error(`config \`position\` must be \`first\`, \`after-system\` or \`last\`, got \`${this.position}\``);
    }
  }

  preRequest(req) {
    // Roles are free to read; only system messages' text is read.
    let leadingSystem = 0;
    let counting = true;
    for (const [i, role] of req.messages()) {
      if (role !== Role.system) {
        counting = false;
        continue;
      }
      if (counting) leadingSystem += 1;
      if (req.text(i) === this.prompt) return PreAction.continue();
    }
    const at =
      this.position === "first" ? 0 : this.position === "after-system" ? leadingSystem : req.messageCount();
    req.insertMessage(at, Role.system, this.prompt);
    return PreAction.continue();
  }
}

export const { lifecycle, requestHooks, streamHooks, toolHooks, provider, deviceHooks, deviceProbe, endpoint } =
  exportPlugin(SystemPrompt);
