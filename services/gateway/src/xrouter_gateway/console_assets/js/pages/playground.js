// Playground: chat with a model, streamed (fetch + ReadableStream, SSE parsed here); each answer
// shows the route the gateway took (X-XRouter-Route), its tokens and its cost (the usage chunk).
import { api, stream } from "../api.js";
import { clear, el, field } from "../dom.js";
import { num, rub } from "../format.js";
import { t } from "../i18n.js";

/** Yields each `data:` payload of an SSE body, as text, until the stream ends. */
export async function* sseData(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let cut = buffer.indexOf("\n\n");
    while (cut >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
      if (data) yield data;
      cut = buffer.indexOf("\n\n");
    }
  }
}

function bubble(role, text) {
  const content = el("div", { class: "content" }, text);
  const meta = el("div", { class: "meta" });
  const node = el("div", { class: `msg ${role}` }, el("div", { class: "who" }, t(role === "user" ? "play.you" : "play.assistant")), content, meta);
  return { node, content, meta };
}

export async function render(main, ctx) {
  main.append(el("h1", null, t("play.title")));
  const models = (await api("GET", "/v1/models")).data;
  const model = el("select", { testid: "play-model" }, models.map((m) => el("option", { value: m.id }, m.id)));
  const temperature = el("input", { type: "number", min: "0", max: "2", step: "0.1", value: "0.7", testid: "play-temperature" });
  const maxTokens = el("input", { type: "number", min: "1", step: "1", value: "256", testid: "play-max-tokens" });
  const system = el("textarea", { rows: "2", testid: "play-system" });
  const message = el("textarea", { rows: "3", testid: "play-message", required: true });
  const send = el("button", { type: "submit", testid: "play-send" }, t("play.send"));
  const stop = el("button", { type: "button", testid: "play-stop", disabled: true }, t("play.stop"));
  const log = el("div", { class: "chat", testid: "play-log" });
  const status = el("div");
  let history = [];
  let controller = null;

  async function ask(text) {
    const user = bubble("user", text);
    const answer = bubble("assistant", "");
    log.append(user.node, answer.node);
    history.push({ role: "user", content: text });
    const messages = [...(system.value.trim() ? [{ role: "system", content: system.value.trim() }] : []), ...history];
    const body = { model: model.value, messages, stream: true, stream_options: { include_usage: true },
      temperature: Number(temperature.value), max_tokens: Number(maxTokens.value) };
    controller = new AbortController();
    let reply = "";
    try {
      const resp = await stream("/v1/chat/completions", body, controller.signal);
      const route = resp.headers.get("X-XRouter-Route");
      answer.meta.append(el("div", { testid: "play-route" }, `${t("play.route")}: ${route || "—"}`));
      for await (const data of sseData(resp.body)) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message || "stream error");
        for (const choice of chunk.choices || []) {
          const piece = choice.delta && choice.delta.content;
          if (piece) { reply += piece; answer.content.textContent = reply; }
        }
        if (chunk.usage) {
          answer.meta.append(el("div", { testid: "play-usage" }, t("play.usage", num(chunk.usage.prompt_tokens), num(chunk.usage.completion_tokens), rub(chunk.usage.cost)),
            chunk.id ? el("code", { class: "muted" }, ` ${chunk.id}`) : null));
        }
      }
      history.push({ role: "assistant", content: reply });
    } catch (err) {
      if (err.name !== "AbortError") answer.meta.append(ctx.errorBox(err));
      if (reply) history.push({ role: "assistant", content: reply });
    } finally {
      controller = null;
    }
  }

  const form = el("form", {
    class: "play",
    onsubmit: async (event) => {
      event.preventDefault();
      const text = message.value.trim();
      if (!text || controller) return;
      message.value = "";
      send.disabled = true;
      stop.disabled = false;
      clear(status);
      await ask(text);
      send.disabled = false;
      stop.disabled = true;
      message.focus();
    },
  }, el("div", { class: "filters" }, field(t("play.model"), model), field(t("play.temperature"), temperature), field(t("play.maxTokens"), maxTokens)),
  field(t("play.system"), system), log, field(t("play.message"), message),
  el("div", { class: "actions" }, send, stop, el("button", { type: "button", onclick: () => { history = []; clear(log); } }, t("play.clear"))), status);
  stop.addEventListener("click", () => { if (controller) controller.abort(); });
  main.append(form);
  return () => { if (controller) controller.abort(); };
}
