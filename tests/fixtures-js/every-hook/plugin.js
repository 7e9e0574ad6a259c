// Test fixture: a JavaScript plugin with every hook of the SDK doing
// something visible, to check each crosses the WIT boundary both ways.
//
// - provider `js-echo`: `complete` answers `echo: <last message>` with usage;
//   `startStream` streams the same text word by word (its own generator), or
//   fails with `rate-limited` when the last message is `fail`, or streams the
//   whole `complete` answer (the SDK's default) when it starts with `whole`.
// - `postResponse`: appends ` [js-post]` and sets `system_fingerprint`; an
//   error outcome is replaced by a `recovered: <message>` answer.
// - `onChunk`: upper-cases text; drops a chunk whose text is `drop `.
// - `onStreamEnd`: appends a ` [js-end]` chunk.
// - `onToolCall`: denies `rm`, answers `now` with `{"time": 42}`, rewrites
//   `read_file`'s `path` under `/safe`, allows the rest.
// - `probe`: one GPU-like device; `onDeviceProbe` annotates every report.
// - endpoint: mode `chat`, `/v1/chat/completions` only, healthy when the
//   check took less than half its timeout.

import {
  ChunkAction,
  LlmError,
  Plugin,
  PostAction,
  ToolAction,
  completion,
  completionId,
  exportPlugin,
} from "../../../plugin-sdk/js/plugbox.js";

function lastText(req) {
  const n = req.messageCount();
  return n === 0 ? "" : (req.text(n - 1) ?? "");
}

class EveryHook extends Plugin {
  providerType() {
    return "js-echo";
  }

  complete(req) {
    const text = `echo: ${lastText(req)}`;
    return completion(req.model(), text, { promptTokens: 3, completionTokens: text.split(" ").length });
  }

  startStream(req) {
    // Read everything first: the generator runs after this call returns.
    const text = lastText(req);
    if (text === "fail") throw LlmError.rateLimited("slow down", 10).withRetryAfter(1500);
    if (text.startsWith("whole")) return super.startStream(req);
    const model = req.model();
    const id = completionId();
    return (function* () {
      const words = text.split(" ");
      for (let i = 0; i < words.length; i++) {
        const content = i + 1 < words.length ? `${words[i]} ` : words[i];
        yield { id, object: "chat.completion.chunk", created: 0, model, choices: [{ index: 0, delta: { content } }] };
      }
      yield { id, object: "chat.completion.chunk", created: 0, model, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] };
    })();
  }

  postResponse(_req, resp) {
    const error = resp.error();
    if (error) return PostAction.respond(completion(resp.model() || "m", `recovered: ${error.message}`));
    resp.setText(0, `${resp.text(0) ?? ""} [js-post]`);
    resp.setParam("system_fingerprint", "js");
    return PostAction.continue();
  }

  onChunk(_req, chunk) {
    const text = chunk.choiceCount() > 0 ? chunk.text(0) : undefined;
    if (text === undefined) return ChunkAction.continue();
    if (text === "drop ") return ChunkAction.drop();
    chunk.setText(0, text.toUpperCase());
    return ChunkAction.continue();
  }

  onStreamEnd(_req, end) {
    end.appendText(" [js-end]");
  }

  onToolCall(_req, call) {
    switch (call.name()) {
      case "rm":
        return ToolAction.deny("no rm");
      case "now":
        return ToolAction.answer({ time: 42 });
      case "read_file": {
        const args = call.arguments();
        call.setArguments({ ...args, path: `/safe${args.path}` });
        return ToolAction.allow();
      }
      default:
        return ToolAction.allow();
    }
  }

  probe() {
    return [
      {
        id: "js:0",
        kind: "gpu",
        name: "JS GPU",
        online: true,
        memoryTotalMb: 24576,
        memoryFreeMb: 20480,
        memoryUsedMb: 4096,
        utilization: 12.5,
        temperatureC: undefined,
        source: "plugin:every-hook",
        annotations: [["vendor", "js"]],
      },
    ];
  }

  onDeviceProbe(reports) {
    return reports.map((r) => ({ ...r, annotations: [...r.annotations, ["seen-by", "every-hook"]] }));
  }

  mode() {
    return "chat";
  }

  supportedEndpoints() {
    return ["/v1/chat/completions"];
  }

  validateRequest(path, modelAlias) {
    if (path !== "/v1/chat/completions") throw new Error(`\`${modelAlias}\` is a chat model: \`${path}\` is not served`);
  }

  healthCheck(_modelAlias, _baseUrl, elapsedMs, timeoutMs) {
    return elapsedMs * 2 < timeoutMs
      ? { healthy: true, message: `answered in ${elapsedMs} ms` }
      : { healthy: false, message: `slow: ${elapsedMs} of ${timeoutMs} ms` };
  }
}

export const { lifecycle, requestHooks, streamHooks, toolHooks, provider, deviceHooks, deviceProbe, endpoint } =
  exportPlugin(EveryHook);
