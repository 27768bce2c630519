// Keys: the account's keys; create one (shown once, with a copy button), disable or enable it,
// change its limits and allowed models, delete it (after a second click).
import { accountParam, api, query, session } from "../api.js";
import { clear, el, field, table } from "../dom.js";
import { num, rub, time } from "../format.js";
import { t } from "../i18n.js";

const TIERS = ["free", "pro", "max", "mgmt"];

function limitsText(k) {
  const r = k.rate_limit || {};
  const parts = [];
  parts.push(k.limit === null || k.limit === undefined ? t("keys.noLimit") : `≤ ${rub(k.limit)}`);
  if (r.requests !== null && r.requests !== undefined) parts.push(t("keys.perMinute", num(r.requests)));
  if (r.requests_per_day !== null && r.requests_per_day !== undefined) parts.push(t("keys.perDay", num(r.requests_per_day)));
  parts.push(k.allowed_models ? k.allowed_models.join(", ") : t("keys.anyModel"));
  return parts.join(" · ");
}

function listOf(text) {
  return text.split(",").map((s) => s.trim()).filter(Boolean);
}

function numberOrNull(text) {
  return text.trim() === "" ? null : Number(text);
}

function keyForm(values, submitText, onSubmit, status) {
  const id = (name) => (values.id ? `edit-${name}` : name);  // the editor's hooks differ from the creator's
  const inputs = {
    name: el("input", { name: "name", value: values.name || "", testid: id("key-name") }),
    tier: el("select", { name: "tier", testid: id("key-tier") }, TIERS.map((x) => el("option", { value: x, selected: x === (values.tier || "pro") }, x))),
    limit: el("input", { name: "limit", inputmode: "decimal", value: values.limit ?? "", testid: id("key-limit") }),
    models: el("input", { name: "models", value: (values.allowed_models || []).join(", "), testid: id("key-models") }),
    rpm: el("input", { name: "rpm", inputmode: "numeric", value: values.rpm ?? "", testid: id("key-rpm") }),
  };
  const form = el("form", {
    class: "row-form",
    onsubmit: async (event) => {
      event.preventDefault();
      clear(status);
      const body = {
        name: inputs.name.value.trim() || undefined,
        limit: inputs.limit.value.trim() === "" ? null : inputs.limit.value.trim(),
        allowed_models: listOf(inputs.models.value),
      };
      const rpm = numberOrNull(inputs.rpm.value);
      if (rpm !== null) body.requests_per_minute = rpm;
      await onSubmit(body, inputs.tier.value);
    },
  }, field(t("keys.name"), inputs.name), values.id ? null : field(t("keys.tier"), inputs.tier),
  field(t("keys.limit"), inputs.limit), field(t("keys.models"), inputs.models), field(t("keys.rpm"), inputs.rpm),
  el("button", { type: "submit", testid: values.id ? "save-key" : "create-key" }, submitText));
  return form;
}

function shownOnce(key) {
  const note = el("span", { class: "muted" });
  const copy = el("button", {
    type: "button", testid: "copy-key",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(key);
        note.textContent = t("keys.copied");
      } catch {
        note.textContent = t("keys.copyFailed");
      }
    },
  }, t("keys.copy"));
  return el("div", { class: "card secret" }, el("p", null, t("keys.created")),
    el("code", { testid: "new-key" }, key), " ", copy, " ", note);
}

export async function render(main, ctx) {
  main.append(el("h1", null, t("keys.title")));
  const accountInput = el("input", { name: "account", testid: "keys-account", value: session.account_id || "" });
  const status = el("div", { testid: "keys-status" });
  const created = el("div");
  const list = el("div");

  async function refresh() {
    clear(list);
    try {
      const reply = await api("GET", `/v1/keys${query({ account_id: accountParam(ctx, accountInput) })}`);
      list.append(reply.data.length ? table(
        [t("keys.name"), t("keys.prefix"), t("keys.tier"), t("keys.status"), t("keys.usage"), t("keys.limits"), t("keys.created_at"), t("keys.actions")],
        reply.data.map((k) => [k.label, el("code", null, k.prefix), k.tier,
          { text: k.disabled ? t("keys.disabled") : t("keys.enabled"), class: k.disabled ? "bad" : "good" },
          { text: rub(k.usage), class: "num" }, limitsText(k), time(k.created_at), actions(k)]),
        { testid: "keys-table" }) : el("p", { class: "muted" }, t("common.none")));
    } catch (err) {
      list.append(ctx.errorBox(err));
    }
  }

  async function change(fn) {
    clear(status);
    try {
      await fn();
      await refresh();
    } catch (err) {
      status.append(ctx.errorBox(err));
    }
  }

  function actions(k) {
    const cell = el("div", { class: "actions" });
    const own = k.id === session.key_id;
    cell.append(el("button", {
      type: "button", class: "small", disabled: own, testid: `toggle-${k.id}`,
      onclick: () => change(() => api("PATCH", `/v1/keys/${encodeURIComponent(k.id)}`, { disabled: !k.disabled })),
    }, k.disabled ? t("keys.enable") : t("keys.disable")));
    cell.append(el("button", {
      type: "button", class: "small", testid: `edit-${k.id}`,
      onclick: () => {
        const editor = keyForm({ id: k.id, name: k.label, limit: k.limit, allowed_models: k.allowed_models, rpm: k.rate_limit?.requests },
          t("common.save"), (body) => change(() => api("PATCH", `/v1/keys/${encodeURIComponent(k.id)}`, body)), status);
        clear(created).append(el("div", { class: "card" }, el("h2", null, `${t("keys.edit")}: ${k.label}`), editor));
      },
    }, t("keys.edit")));
    const del = el("button", {
      type: "button", class: "small danger", disabled: own, testid: `delete-${k.id}`,
      onclick: () => {
        if (del.dataset.armed !== "1") {
          del.dataset.armed = "1";
          del.textContent = t("keys.confirmDelete");
          return;
        }
        change(() => api("DELETE", `/v1/keys/${encodeURIComponent(k.id)}`));
      },
    }, t("keys.delete"));
    cell.append(del);
    return cell;
  }

  const form = keyForm({}, t("keys.createButton"), async (body, tier) => {
    try {
      const account = accountParam(ctx, accountInput);
      const reply = await api("POST", "/v1/keys", { ...body, tier, account_id: account || undefined, limit: body.limit ?? undefined });
      clear(created).append(shownOnce(reply.key));
      await refresh();
    } catch (err) {
      status.append(ctx.errorBox(err));
    }
  }, status);
  if (session.role === "master") {
    main.append(el("div", { class: "filters" }, el("label", { class: "field" }, el("span", null, t("common.account")), accountInput),
      el("button", { type: "button", onclick: refresh }, t("op.show"))));
  }
  main.append(el("section", { class: "card" }, el("h2", null, t("keys.create")), form), created, status, list);
  await refresh();
}
