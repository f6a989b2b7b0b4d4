// One scenario of the challenge window in real Chromium. Started by
// tests/tests/e2e/browser.rs, which owns the server and its clock: this
// script asks it for things by printing ">> COMMAND args" on stdout and
// reading one answer line on stdin ("ok [value]" or "error message").
//   >> APPROVE <number|->   the phone approves the pending challenge
//   >> CODE <recipient> <n> the n-th code sent to recipient
//   >> ADVANCE <secs>       move the server clock and run its timers
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";

const [scenario] = process.argv.slice(2);
const base = process.env.BASE_URL;
const pan = process.env.PAN;
const shots = process.env.SHOTS;
mkdirSync(shots, { recursive: true });

const answers = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(command) {
  process.stdout.write(`>> ${command}\n`);
  const { value } = await answers.next();
  if (!value || !value.startsWith("ok")) throw new Error(`${command}: ${value}`);
  return value.slice(2).trim();
}
function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const locale = process.env.LOCALE || "en-GB";
// The "nojs" scenario runs with JavaScript off: every step through plain forms.
const javaScriptEnabled = scenario !== "nojs";
const context = await browser.newContext({ locale, javaScriptEnabled, viewport: { width: 1000, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(15000);

async function shot(name, target = page) {
  await target.screenshot({ path: `${shots}/${scenario}-${name}.png`, fullPage: true });
}
async function checkout(size = "05", amount = "128.00") {
  await page.goto(`${base}/demo`);
  await page.fill("#pan", pan);
  await page.fill("#amount", amount);
  await page.selectOption("#size", size);
  await page.click("button[type=submit]");
  const frame = page.frameLocator("iframe[name=challenge]");
  await frame.locator("body[data-screen]").waitFor();
  return frame;
}
async function screen(frame) {
  return frame.locator("body").getAttribute("data-screen");
}
async function waitScreen(frame, kind) {
  await frame.locator(`body[data-screen="${kind}"]`).waitFor();
}
async function result(status) {
  await page.waitForURL(/\/demo\/result\//);
  check((await page.textContent("#trans-status")).trim() === status, `transStatus ${status}`);
  for (let i = 0; i < 50 && (await page.textContent("#rreq")).trim() !== "delivered"; i++) {
    await page.waitForTimeout(100);
    await page.reload();
  }
  check((await page.textContent("#rreq")).trim() === "delivered", "RReq delivered");
  await shot("result");
}
// The window fits its frame: no horizontal scrolling, and the screen's
// primary button lies inside the frame once scrolled to (never cut off).
async function checkFit(frame, name, size) {
  const fit = await frame.locator("body").evaluate((body) => {
    const doc = document.documentElement;
    const button = body.querySelector("main button.primary");
    if (button) button.scrollIntoView({ block: "nearest", inline: "nearest" });
    const r = button && button.getBoundingClientRect();
    return {
      scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, innerWidth, innerHeight,
      button: r && { left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height },
    };
  });
  const what = `${name}: ${JSON.stringify(fit)}`;
  if (size) check(fit.innerWidth === size[0] && fit.innerHeight === size[1], `window is ${size.join("x")}, ${what}`);
  check(fit.scrollWidth <= fit.clientWidth, `no horizontal overflow, ${what}`);
  check(fit.button && fit.button.width > 0 && fit.button.height > 0, `a primary button, ${what}`);
  check(fit.button.left >= 0 && fit.button.right <= fit.clientWidth, `primary button within the width, ${what}`);
  check(fit.button.top >= 0 && fit.button.bottom <= fit.innerHeight, `primary button reachable, ${what}`);
  check(await frame.locator("main button.primary").first().isVisible(), `primary button visible, ${what}`);
  await shot(name);
}
// Submits a code and waits for the page that answers it: the form posts
// and the frame loads a new document, so the current one is marked first
// and only an unmarked body counts. (Reading the screen right after the
// click could still see the old page, and a next submit then interrupted
// the one in flight: under load the fifth wrong code never arrived.)
async function enterCode(frame, code) {
  await frame.locator("body").evaluate((body) => body.setAttribute("data-left", ""));
  await frame.locator("#code").fill(code);
  await frame.locator("form.code button[type=submit]").click();
  await frame.locator("body[data-screen]:not([data-left])").waitFor();
}

const scenarios = {
  // The phone approves while the page waits; the page completes by itself.
  async push() {
    const frame = await checkout("02");
    await waitScreen(frame, "waiting");
    const number = await frame.locator("[data-number]").getAttribute("data-number").catch(() => null);
    await shot("waiting");
    await ask(`APPROVE ${number ?? "-"}`);
    await waitScreen(frame, "success");
    check(await frame.locator(".returning").isVisible(), "'returning to the shop' with JavaScript");
    await shot("success");
    await result("Y");
  },

  // No device: code by email; resend gives the same code; a wrong code is
  // counted; the right one (typed with the keyboard only) completes.
  async code() {
    const frame = await checkout("05", "60.00");
    await waitScreen(frame, "code");
    check((await frame.locator(".masked").first().textContent()).includes("@example.jp"), "masked email shown");
    check((await frame.locator("#code").getAttribute("autocomplete")) === "one-time-code", "one-time-code autocomplete");
    await shot("code");
    const first = await ask("CODE taro@example.jp 1");
    await frame.locator("form:has(input[value=resend]) button").click();
    await frame.locator(".notice.error").waitFor();
    await ask("ADVANCE 31");
    await frame.locator("form:has(input[value=resend]) button").click();
    await frame.locator(".notice:not(.error)").waitFor();
    const second = await ask("CODE taro@example.jp 2");
    check(first === second, "a resend repeats the same code");
    await enterCode(frame, first === "000000" ? "111111" : "000000");
    await frame.locator(".notice.error").waitFor();
    check((await frame.locator(".notice.error").textContent()).includes("4"), "4 attempts left");
    await shot("wrong-code");
    // Keyboard only: the code field has focus after the page loads.
    await page.keyboard.type(first);
    await page.keyboard.press("Enter");
    await waitScreen(frame, "success");
    await result("Y");
  },

  async blocked() {
    const frame = await checkout("03", "60.00");
    await waitScreen(frame, "code");
    const code = await ask("CODE taro@example.jp 1");
    const wrong = code === "000000" ? "111111" : "000000";
    for (let i = 0; i < 5; i++) {
      await enterCode(frame, wrong);
      if ((await screen(frame)) === "blocked") break;
    }
    await waitScreen(frame, "blocked");
    await shot("blocked");
    await frame.locator("#cres button").click();
    await result("N");
  },

  async expiry() {
    const frame = await checkout("04", "60.00");
    await waitScreen(frame, "code");
    await ask("ADVANCE 601");
    await waitScreen(frame, "expired");
    await shot("expired");
    await frame.locator("#cres button").click();
    await result("N");
  },

  // No contact: the security questions (one wrong try counted), then an
  // email for this card, then the code sent there.
  async register() {
    const frame = await checkout("05", "60.00");
    await waitScreen(frame, "questions");
    await shot("questions");
    await frame.locator("#answer0").fill("wrong");
    await frame.locator("#answer1").fill("wrong");
    await frame.locator("form.questions button").click();
    await frame.locator(".notice.error").waitFor();
    check((await frame.locator(".notice.error").textContent()).includes("4"), "4 attempts left after a wrong answer");
    await frame.locator("#answer0").fill("ＴＯＫＹＯ");
    await frame.locator("#answer1").fill(" pochi ");
    await frame.locator("form.questions button").click();
    await waitScreen(frame, "contact");
    await shot("contact");
    await frame.locator("#email").fill("hanako@example.se");
    await frame.locator("form.contact button").click();
    await waitScreen(frame, "code");
    await shot("code-after-registration");
    await enterCode(frame, await ask("CODE hanako@example.se 1"));
    await waitScreen(frame, "success");
    await result("Y");
  },

  // JavaScript off: the demo's noscript button opens the window, the code
  // goes in through a plain form, and the visible buttons carry the CRes
  // to the shop and the shop's result to the top page.
  async nojs() {
    await page.goto(`${base}/demo`);
    await page.fill("#pan", pan);
    await page.fill("#amount", "60.00");
    await page.selectOption("#size", "02");
    await page.click("button[type=submit]");
    await page.locator("noscript button, form[target=challenge] button").click();
    const frame = page.frameLocator("iframe[name=challenge]");
    await waitScreen(frame, "code");
    check((await frame.locator("html").getAttribute("class")) === null, "no script ran");
    check(await frame.locator("#refresh button").isVisible(), "'Check again' is visible without JavaScript");
    await shot("code");
    await enterCode(frame, "000000" === (await ask("CODE taro@example.jp 1")) ? "111111" : "000000");
    await frame.locator(".notice.error").waitFor();
    await shot("wrong-code");
    await enterCode(frame, await ask("CODE taro@example.jp 1"));
    await waitScreen(frame, "success");
    await shot("success");
    const back = frame.locator("#cres button");
    check(await back.isVisible(), "the CRes post has a visible button");
    check(!(await frame.locator(".returning").isVisible()), "no 'returning to the shop' promise without JavaScript");
    await back.click();
    await frame.locator("form[target=_top] button").click();
    await result("Y");
  },

  // EMV size 01 (250x400): waiting, code and success screens fit.
  async size01() {
    const frame = await checkout("01", "60.00");
    await waitScreen(frame, "waiting");
    await checkFit(frame, "waiting", [250, 400]);
    await frame.locator("main button.primary").click();
    await waitScreen(frame, "code");
    await checkFit(frame, "code", [250, 400]);
    await enterCode(frame, await ask("CODE taro@example.jp 1"));
    await waitScreen(frame, "success");
    await checkFit(frame, "success", [250, 400]);
    await result("Y");
  },

  // EMV size 05 (full screen): on a desktop page and on a narrow phone.
  async size05() {
    const frame = await checkout("05", "60.00");
    await waitScreen(frame, "code");
    await checkFit(frame, "code-desktop");
    await page.setViewportSize({ width: 320, height: 568 });
    await checkFit(frame, "code-phone");
    await frame.locator("form:has(input[value=cancel]) button").click();
    await waitScreen(frame, "cancelled");
    await checkFit(frame, "cancelled-phone");
    await result("N");
  },

  // Accept-Language picks Swedish; the switcher (by keyboard) changes it.
  async languages() {
    const frame = await checkout("01", "60.00");
    await waitScreen(frame, "code");
    check((await frame.locator("html").getAttribute("lang")) === "sv", "Swedish from Accept-Language");
    await shot("sv-size-01");
    const overflow = await frame.locator("body").evaluate((b) => b.scrollWidth > b.clientWidth + 1);
    check(!overflow, "no horizontal scrolling at 250x400");
    await frame.locator("button[lang=ja]").focus();
    await page.keyboard.press("Enter");
    await frame.locator("html[lang=ja]").waitFor();
    await shot("ja-size-01");
    await frame.locator("button[lang=en]").focus();
    await page.keyboard.press("Enter");
    await frame.locator("html[lang=en]").waitFor();
    await shot("en-size-01");
    await frame.locator("form:has(input[value=cancel]) button").click();
    await waitScreen(frame, "cancelled");
    await shot("cancelled");
    await result("N");
  },
};

try {
  await scenarios[scenario]();
  console.log(`scenario ${scenario}: passed`);
} catch (e) {
  await shot("failure").catch(() => {});
  console.log(`scenario ${scenario}: FAILED: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  process.exit();
}
