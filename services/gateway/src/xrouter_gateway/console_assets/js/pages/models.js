// Models: the catalog with RUB prices per million tokens, context lengths and parameters.
import { api } from "../api.js";
import { el, table } from "../dom.js";
import { num, perMillion } from "../format.js";
import { t } from "../i18n.js";

export async function render(main) {
  main.append(el("h1", null, t("models.title")));
  const reply = await api("GET", "/v1/models");
  const rows = reply.data.map((m) => [
    el("div", null, el("strong", null, m.id), m.name && m.name !== m.id ? el("div", { class: "muted" }, m.name) : null),
    { text: num(m.context_length), class: "num" },
    { text: m.pricing ? perMillion(m.pricing.prompt) : t("models.unpriced"), class: "num" },
    { text: m.pricing ? perMillion(m.pricing.completion) : t("models.unpriced"), class: "num" },
    (m.providers || []).join(", "),
    el("div", { class: "chips" }, (m.supported_parameters || []).map((p) => el("span", { class: "chip" }, p))),
  ]);
  main.append(table([t("models.id"), t("models.context"), t("models.prompt"), t("models.completion"), t("models.providers"), t("models.params")], rows, { testid: "models-table" }));
}
