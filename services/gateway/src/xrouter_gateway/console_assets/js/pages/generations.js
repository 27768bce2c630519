// Generations: the latest ones with their numbers (never their prompts or completions),
// filtered by model, provider and key, a page at a time.
import { accountParam, api, ApiError, query, session } from "../api.js";
import { clear, el, field, table } from "../dom.js";
import { num, rub, time, yesNo } from "../format.js";
import { t } from "../i18n.js";

const PAGE = 50;

export async function render(main, ctx) {
  main.append(el("h1", null, t("gen.title")), el("p", { class: "muted" }, t("gen.note")));
  const inputs = {
    model: el("input", { testid: "gen-model" }),
    provider: el("input", { testid: "gen-provider" }),
    key_id: el("input", { testid: "gen-key", value: ctx.params.get("key_id") || "" }),
    account_id: el("input", { testid: "gen-account", value: session.role === "master" ? "" : session.account_id || "" }),
  };
  const out = el("div");
  const more = el("button", { type: "button", testid: "gen-more", hidden: true }, t("common.more"));
  let before = null;
  let body = null;

  function rowOf(g) {
    return [time(g.created_at), g.model, g.provider, el("code", null, g.key_id || "—"),
      { text: `${num(g.prompt_tokens)} / ${num(g.completion_tokens)}`, class: "num" },
      { text: `${num(g.cached_tokens)} / ${num(g.cache_write_tokens)} / ${num(g.reasoning_tokens)}`, class: "num" },
      { text: rub(g.cost), class: "num" }, { text: num(g.latency_ms), class: "num" }, yesNo(g.streamed), g.finish_reason || "—"];
  }

  let latest = 0;  // only the latest request draws: an earlier answer that arrives late is dropped

  async function load(reset) {
    const mine = ++latest;
    if (reset) { clear(out); before = null; body = null; }
    const params = { limit: PAGE, before, model: inputs.model.value.trim(), provider: inputs.provider.value.trim(), key_id: inputs.key_id.value.trim() };
    params.account_id = accountParam(ctx, inputs.account_id);
    try {
      const reply = await api("GET", `/v1/generations${query(params)}`);
      if (mine !== latest) return;
      if (!body) {
        if (!reply.data.length) { out.append(el("p", { class: "muted" }, t("common.none"))); more.hidden = true; return; }
        const tbl = table([t("gen.time"), t("gen.model"), t("gen.provider"), t("gen.key"), t("gen.tokens"), t("gen.cached"), t("gen.cost"), t("gen.latency"), t("gen.streamed"), t("gen.finish")], [], { testid: "gen-table" });
        body = tbl.querySelector("tbody");
        out.append(tbl);
      }
      for (const g of reply.data) body.append(el("tr", null, rowOf(g).map((c) => (c !== null && typeof c === "object" && !(c instanceof Node) ? el("td", { class: c.class }, c.text) : el("td", null, c)))));
      before = reply.next_before;
      more.hidden = !before || reply.data.length < PAGE;
    } catch (err) {
      if (mine !== latest) return;
      more.hidden = true;
      if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
        out.append(el("p", { class: "error", testid: "error" }, t("common.unavailable", "/v1/generations")));
      } else {
        out.append(ctx.errorBox(err));
      }
    }
  }

  more.addEventListener("click", () => load(false));
  main.append(el("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); load(true); } },
    field(t("gen.model"), inputs.model), field(t("gen.provider"), inputs.provider), field(t("gen.key"), inputs.key_id),
    session.role === "master" ? field(t("common.account"), inputs.account_id) : null,
    el("button", { type: "submit", testid: "gen-apply" }, t("common.apply"))), out, more);
  await load(true);
}
