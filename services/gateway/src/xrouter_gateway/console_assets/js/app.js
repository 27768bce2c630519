// The console's shell: sign-in, the navigation the signed-in role may use, hash routing, the
// language toggle. Pages live in pages/*.js; each renders into the main element.
import { ApiError, loadSession, session, signIn, signOut } from "./api.js";
import { clear, el, field } from "./dom.js";
import { lang, LANGUAGES, setLang, t } from "./i18n.js";
import * as generations from "./pages/generations.js";
import * as keys from "./pages/keys.js";
import * as models from "./pages/models.js";
import * as operator from "./pages/operator.js";
import * as overview from "./pages/overview.js";
import * as playground from "./pages/playground.js";
import * as providers from "./pages/providers.js";
import * as usage from "./pages/usage.js";

// Which role sees which page follows what the API lets that role read.
const PAGES = [
  { id: "operator", page: operator, roles: ["master"] },
  { id: "overview", page: overview, roles: ["management", "key"] },
  { id: "keys", page: keys, roles: ["master", "management"] },
  { id: "usage", page: usage, roles: ["master", "management"] },
  { id: "generations", page: generations, roles: ["master", "management", "key"] },
  { id: "models", page: models, roles: ["master", "management", "key"] },
  { id: "providers", page: providers, roles: ["master", "management", "key"] },
  { id: "playground", page: playground, roles: ["master", "management", "key"] },
];

const root = document.getElementById("app");
let cleanup = null;

function visiblePages() {
  return PAGES.filter((p) => p.roles.includes(session.role));
}

function langToggle() {
  const other = LANGUAGES.find((l) => l !== lang());
  return el("button", {
    type: "button", class: "link", testid: "lang-toggle", lang: other,
    onclick: () => { setLang(other); render(); },
  }, t("lang.switch"));
}

function errorBox(err) {
  return el("p", { class: "error", role: "alert", testid: "error" }, t("common.error", err.message || String(err)));
}

function signInPage() {
  const input = el("input", {
    type: "password", id: "api-key", testid: "api-key", autocomplete: "off",
    spellcheck: "false", required: true,
  });
  const status = el("div");
  const button = el("button", { type: "submit", testid: "sign-in" }, t("signin.button"));
  const form = el("form", {
    class: "card signin",
    onsubmit: async (event) => {
      event.preventDefault();
      clear(status);
      button.disabled = true;
      button.textContent = t("signin.busy");
      try {
        await signIn(input.value.trim());
        input.value = "";
        location.hash = "";
        render();
      } catch (err) {
        status.append(errorBox(err));
        button.disabled = false;
        button.textContent = t("signin.button");
      }
    },
  }, el("h1", null, t("app.title")), el("h2", null, t("signin.title")),
  el("p", { class: "muted" }, t("signin.hint")), field(t("signin.key"), input), button, status);
  clear(root).append(el("header", { class: "top" }, el("span", { class: "brand" }, "XRouter"), langToggle()), form);
  input.focus();
}

// "#/keys?account_id=acme": the page, and parameters its filters start from (for scripts).
function route() {
  const [id, params = ""] = location.hash.replace(/^#\/?/, "").split("?");
  return { id, params: new URLSearchParams(params) };
}

function currentPage(pages) {
  const { id } = route();
  return pages.find((p) => p.id === id) || pages[0];
}

function shell() {
  const pages = visiblePages();
  const active = currentPage(pages);
  const nav = el("nav", { class: "side" }, pages.map((p) => el("a", {
    href: `#/${p.id}`, testid: `nav-${p.id}`, class: p === active ? "active" : null,
  }, t(`nav.${p.id}`))));
  const who = el("span", { class: "who", testid: "who" },
    [session.label || session.key_id, t(`role.${session.role}`), session.account_id].filter(Boolean).join(" · "));
  const out = el("button", {
    type: "button", class: "link", testid: "sign-out",
    onclick: async () => { await signOut().catch(() => {}); render(); },
  }, t("signout"));
  const main = el("main", { id: "page", testid: `page-${active.id}` });
  document.title = `${t(`nav.${active.id}`)} · ${t("app.title")}`;
  clear(root).append(
    el("header", { class: "top" }, el("span", { class: "brand" }, "XRouter"), who, langToggle(), out),
    el("div", { class: "layout" }, nav, main),
  );
  const ctx = { errorBox, params: route().params };
  // data-ready: the page has drawn what it loads first (a hook for tests and scripts).
  Promise.resolve(active.page.render(main, ctx))
    .then((fn) => { cleanup = typeof fn === "function" ? fn : null; main.setAttribute("data-ready", "true"); })
    .catch((err) => {
      if (err instanceof ApiError && err.status === 401) { for (const k of Object.keys(session)) session[k] = null; render(); return; }
      main.append(errorBox(err));
    });
}

async function render() {
  if (cleanup) { cleanup(); cleanup = null; }
  document.documentElement.lang = lang();
  if (!session.role) {
    try {
      if (!(await loadSession())) { signInPage(); return; }
    } catch (err) {
      clear(root).append(errorBox(err));
      return;
    }
  }
  shell();
}

window.addEventListener("hashchange", () => { if (session.role) render(); });
render();
