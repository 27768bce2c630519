// Operator view (the master key): accounts with balances and plans, top-ups with a reference,
// an account's top-ups, and its plan.
import { api, ApiError, query } from "../api.js";
import { clear, el, field, table } from "../dom.js";
import { rub, time } from "../format.js";
import { t } from "../i18n.js";

const TIERS = ["free", "pro", "max", "mgmt"];
const LIMITS = [["requests_per_minute", "op.rpm"], ["requests_per_day", "op.rpd"], ["tokens_per_minute", "op.tpm"], ["concurrent", "op.concurrent"]];

function unavailable(err, what) {
  if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
    return el("p", { class: "error", testid: "error" }, t("common.unavailable", what));
  }
  return null;
}

export async function render(main, ctx) {
  main.append(el("h1", null, t("nav.operator")));
  const accounts = el("div");
  const detail = el("div", null, el("p", { class: "muted" }, t("op.select")));
  const status = el("div", { testid: "op-status" });
  const account = el("input", { name: "account", testid: "topup-account", required: true });
  const amount = el("input", { name: "amount", inputmode: "decimal", testid: "topup-amount", required: true });
  const reference = el("input", { name: "reference", testid: "topup-reference" });

  async function showAccount(id) {
    account.value = id;
    clear(detail);
    const plan = el("div");
    const topups = el("div");
    detail.append(el("section", { class: "card" }, el("h2", null, t("op.planOf", id)), plan),
      el("section", { class: "card" }, el("h2", null, t("op.topups", id)), topups));
    try {
      const p = (await api("GET", `/v1/accounts/${encodeURIComponent(id)}/plan`)).data;
      plan.append(planForm(id, p));
    } catch (err) {
      plan.append(ctx.errorBox(err));
    }
    try {
      const rows = (await api("GET", `/v1/credits/topups${query({ account_id: id })}`)).data;
      topups.append(rows.length ? table([t("keys.created_at"), t("op.amount"), t("op.reference")],
        rows.map((r) => [time(r.created_at), { text: rub(r.amount), class: "num" }, r.reference || "—"]), { testid: "topups-table" })
        : el("p", { class: "muted" }, t("common.none")));
    } catch (err) {
      topups.append(unavailable(err, "/v1/credits/topups") || ctx.errorBox(err));
    }
  }

  function planForm(id, p) {
    const tier = el("select", { testid: "plan-tier" }, TIERS.map((x) => el("option", { value: x, selected: x === p.tier }, x)));
    // The default plan's figures are its tier's own limits, not ceilings someone set: they are
    // shown as placeholders, so saving the form without typing one keeps it the tier's.
    const inputs = LIMITS.map(([name, label]) => [name, label, el("input", {
      inputmode: "numeric", value: p.is_default ? "" : (p[name] ?? ""),
      placeholder: p.is_default && p[name] != null ? String(p[name]) : null, testid: `plan-${name}` })]);
    const note = el("div");
    return el("form", {
      class: "row-form",
      onsubmit: async (event) => {
        event.preventDefault();
        clear(note);
        const body = { tier: tier.value };
        for (const [name, , input] of inputs) if (input.value.trim() !== "") body[name] = Number(input.value);
        try {
          await api("PUT", `/v1/accounts/${encodeURIComponent(id)}/plan`, body);
          note.append(el("p", { class: "good" }, t("op.planSaved")));
          await refresh();
        } catch (err) {
          note.append(ctx.errorBox(err));
        }
      },
    }, field(t("keys.tier"), tier), inputs.map(([, label, input]) => field(t(label), input)),
    el("button", { type: "submit", testid: "plan-save" }, t("common.save")), note);
  }

  async function refresh() {
    clear(accounts);
    try {
      const rows = (await api("GET", "/v1/accounts")).data;
      accounts.append(rows.length ? table([t("common.account"), t("op.name"), t("overview.balance"), t("op.plan"), t("keys.created_at"), ""],
        rows.map((a) => [el("code", null, a.account_id), a.name || "—", { text: rub(a.balance), class: "num", testid: `balance-${a.account_id}` },
          a.plan || "—", time(a.created_at), el("button", { type: "button", class: "small", testid: `show-${a.account_id}`, onclick: () => showAccount(a.account_id) }, t("op.show"))]),
        { testid: "accounts-table" }) : el("p", { class: "muted" }, t("common.none")));
    } catch (err) {
      accounts.append(unavailable(err, "/v1/accounts") || ctx.errorBox(err));
    }
  }

  const topup = el("form", {
    class: "row-form",
    onsubmit: async (event) => {
      event.preventDefault();
      clear(status);
      try {
        const c = (await api("POST", "/v1/credits", { account_id: account.value.trim(), amount: amount.value.trim(), reference: reference.value.trim() })).data;
        status.append(el("p", { class: "good", testid: "topup-done" }, t("op.topupDone", c.account_id, rub(c.balance))));
        amount.value = "";
        reference.value = "";
        await refresh();
        await showAccount(c.account_id);
      } catch (err) {
        status.append(ctx.errorBox(err));
      }
    },
  }, field(t("common.account"), account), field(t("op.amount"), amount), field(t("op.reference"), reference),
  el("button", { type: "submit", testid: "topup-submit" }, t("op.topup")));
  main.append(el("section", { class: "card" }, el("h2", null, t("op.title")), accounts),
    el("section", { class: "card" }, el("h2", null, t("op.topup")), topup, status), detail);
  await refresh();
}
