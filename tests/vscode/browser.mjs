// A headless Chromium on a code-server page, driven by Playwright and steered by the Python
// tests one JSON line at a time: each line on stdin is `{"action": ..., ...}`, each answer on
// stdout is `{"value": ...}` or `{"error": "..."}`. The actions are what a user does in VS Code
// (open a file, go to a line, type, press keys) and what the tests read back (ghost text, the
// status bar, notifications, a screenshot).
//
// Usage: node browser.mjs TOOLS CHROMIUM, where TOOLS holds the node_modules of this folder's
// package.json (scripts/install-test-deps.sh installs them outside the work tree).
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import path from 'node:path';

const [tools, executablePath] = process.argv.slice(2);
const { chromium } = createRequire(path.join(tools, 'package.json'))('playwright-core');
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu'] });
const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
const errors = [];
page.on('pageerror', (error) => errors.push(String(error)));

const editor = '.editor-instance .monaco-editor';

/** The ghost text on screen: the inline part and any lines below it, as they read. */
async function ghostText() {
  return page.evaluate(() => {
    const inline = [...document.querySelectorAll('.ghost-text-decoration, .ghost-text-decoration-preview')]
      .map((element) => element.textContent).join('');
    const below = [...document.querySelectorAll('.ghost-text .view-line')]
      .map((line) => line.textContent.replace(/\u00a0/g, ' '));
    return [inline, ...below].join('\n').replace(/\u00a0/g, ' ').replace(/\n+$/, '');
  });
}

const actions = {
  async goto({ url }) {
    await page.goto(url);
    await page.waitForSelector('.monaco-workbench .part.statusbar', { timeout: 60_000 });
    return true;
  },
  async open({ name }) {
    await page.locator('.explorer-folders-view .monaco-list-row', { hasText: name }).first().click();
    await page.waitForSelector(`.tabs-container .tab.active[aria-label*="${name}"]`, { timeout: 30_000 });
    await page.locator(editor).first().click();
    return true;
  },
  /** Puts the cursor at the end of a line (1-based), through Go to Line. */
  async lineEnd({ line }) {
    await page.locator(editor).first().click();
    await page.keyboard.press('Control+G');
    const quickInput = page.locator('.quick-input-widget');
    await quickInput.waitFor({ state: 'visible', timeout: 10_000 });
    await page.keyboard.type(String(line));
    await page.keyboard.press('Enter');
    await quickInput.waitFor({ state: 'hidden', timeout: 10_000 });
    await page.keyboard.press('End');
    await page.locator('.statusbar-item', { hasText: `Ln ${line},` }).first().waitFor({ timeout: 10_000 });
    return true;
  },
  async type({ text }) {
    await page.keyboard.type(text, { delay: 20 });
    return true;
  },
  async press({ key }) {
    await page.keyboard.press(key);
    return true;
  },
  async command({ title }) {
    await page.keyboard.press('Control+Shift+P');
    await page.keyboard.type(title);
    await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ timeout: 10_000 });
    await page.keyboard.press('Enter');
    return true;
  },
  /** Answers the input box (the one that asks `prompt`) a command opened. */
  async answerInput({ prompt, text }) {
    const box = page.locator('.quick-input-widget', { hasText: prompt });
    await box.waitFor({ state: 'visible', timeout: 10_000 });
    await box.locator('input').focus();
    await page.keyboard.type(text);
    await page.keyboard.press('Enter');
    return true;
  },
  /** The chat panel's answer so far, how many different texts it has shown, and whether it
   * is finished (null: no panel yet). */
  async chatPanel() {
    for (const frame of page.frames()) {
      const answer = frame.locator('#answer');
      if (await answer.count().catch(() => 0)) {
        return {
          answer: await answer.textContent(),
          shown: Number((await answer.getAttribute('data-shown')) ?? 0),
          done: await frame.locator('#pending').isHidden(),
        };
      }
    }
    return null;
  },
  ghostText,
  async statusBar() {
    return page.locator('.part.statusbar').innerText();
  },
  async notifications() {
    const toasts = page.locator('.notifications-toasts');
    return (await toasts.count()) ? toasts.innerText() : '';
  },
  async screenshot({ path }) {
    await page.screenshot({ path });
    return path;
  },
  async errors() {
    return errors;
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const request = JSON.parse(line);
  let answer;
  try {
    const action = actions[request.action];
    if (!action) throw new Error(`no action ${request.action}`);
    answer = { value: await action(request) };
  } catch (error) {
    answer = { error: String(error && error.stack || error) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await browser.close();
