// Overview: balance, spend today and this month, daily spend over the last 30 days.
import { api, ApiError, query, read, session } from "../api.js";
import { barChart, lastDays } from "../chart.js";
import { el } from "../dom.js";
import { rub, utcDay } from "../format.js";
import { t } from "../i18n.js";

function tile(label, value, testid) {
  return el("div", { class: "tile" }, el("div", { class: "muted" }, label), el("div", { class: "figure", testid }, value));
}

async function daily() {
  const days = lastDays(30);
  const month = utcDay().slice(0, 7);
  const since = `${[days[0], `${month}-01`].sort()[0]}T00:00:00Z`;
  const reply = await api("GET", `/v1/usage${query({ group_by: "day", since })}`);
  const byDay = new Map();
  for (const row of reply.data) byDay.set(row.day, (byDay.get(row.day) || 0) + Number(row.cost || 0));
  let monthTotal = 0;
  for (const [day, cost] of byDay) if (String(day).startsWith(month)) monthTotal += cost;
  return { points: days.map((d) => ({ label: d, value: byDay.get(d) || 0 })), today: byDay.get(utcDay()) || 0, month: monthTotal };
}

// While the database is away the balance and spend are the last good read: say how old it is.
function staleNote(main, seconds) {
  if (seconds === null || main.querySelector("[data-testid=stale]")) return;
  main.append(el("p", { class: "warn", testid: "stale" }, t("overview.stale", Math.round(seconds))));
}

export async function render(main, ctx) {
  main.append(el("h1", null, t("nav.overview")));
  const { body, stale } = await read("/v1/credits");
  const credits = body.data;
  const tiles = el("div", { class: "tiles" }, tile(t("overview.balance"), rub(credits.balance), "balance"),
    tile(t("overview.credits"), rub(credits.total_credits), "total-credits"));
  main.append(tiles);
  staleNote(main, stale);
  if (session.role === "management") {
    try {
      const d = await daily();
      tiles.append(tile(t("overview.today"), rub(d.today), "spend-today"), tile(t("overview.month"), rub(d.month), "spend-month"));
      main.append(el("section", { class: "card" }, el("h2", null, t("overview.chart")),
        barChart(d.points, { title: t("overview.chart"), format: rub, testid: "daily-chart" })));
    } catch (err) {
      main.append(ctx.errorBox(err));
    }
    return;
  }
  // A plain key reads its own spend from /v1/key (the account's report needs a management key).
  try {
    const { body: keyBody, stale: keyStale } = await read("/v1/key");
    const key = keyBody.data;
    staleNote(main, keyStale);
    tiles.append(tile(t("overview.today"), rub(key.usage_daily), "spend-today"), tile(t("overview.month"), rub(key.usage_monthly), "spend-month"));
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    main.append(ctx.errorBox(err));
  }
  main.append(el("p", { class: "muted" }, t("overview.nochart")));
}
