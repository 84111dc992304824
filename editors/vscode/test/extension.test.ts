// The extension's pure parts (settings, finding modeld) and its activation under a mocked
// `vscode`: a missing program is reported; a present one starts `modeld lsp` with the settings.

import './vscode-mock';

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';

import sharedSettings from '../src/shared-settings.json';
import packageJson from '../package.json';
import { findModeld, parseVersion } from '../src/binary';
import * as extension from '../src/extension';
import { answerMessage, chatParams, renderPage } from '../src/chatPanel';
import { healthFrom, sameModel, stateText } from '../src/daemon';
import { configurationProperties, serverSettings, SharedSetting } from '../src/settings';
import { recorded } from './vscode-mock';

test('package.json contributes exactly the shared settings and modeld.path', () => {
  const expected = configurationProperties(sharedSettings as Record<string, SharedSetting>);
  assert.deepEqual(packageJson.contributes.configuration.properties, expected);
});

test('unset settings are left to the server', () => {
  const values: Record<string, unknown> = { model: 'tiny-fim', maxTokens: null, enabled: false };
  assert.deepEqual(serverSettings(['model', 'maxTokens', 'enabled', 'keepAlive'], (name) => values[name]), {
    model: 'tiny-fim',
    enabled: false,
  });
});

test('modeld is found on PATH or at the configured path', () => {
  const present = new Set(['/opt/modeld/bin/modeld', '/custom/modeld']);
  const isExecutable = (file: string) => present.has(file);
  assert.equal(findModeld(undefined, ['/usr/bin', '/opt/modeld/bin'].join(path.delimiter), isExecutable), '/opt/modeld/bin/modeld');
  assert.equal(findModeld('/custom/modeld', '/opt/modeld/bin', isExecutable), '/custom/modeld');
  assert.equal(findModeld('/missing/modeld', '/opt/modeld/bin', isExecutable), undefined);
  assert.equal(findModeld(null, '/usr/bin', isExecutable), undefined);
});

test('modeld --version output is read with and without a daemon', () => {
  assert.deepEqual(parseVersion('modeld version is 0.1.0\n'), { client: '0.1.0', daemon: '0.1.0' });
  assert.deepEqual(
    parseVersion('Warning: could not connect to a running modeld instance\nWarning: client version is 0.1.0\n'),
    { client: '0.1.0', daemon: undefined },
  );
});

function fakeContext() {
  return { subscriptions: [] as { dispose(): void }[], extensionUri: '/extension' };
}

test('activation without modeld says so and starts nothing', async () => {
  const savedPath = process.env.PATH;
  process.env.PATH = fs.mkdtempSync(path.join(os.tmpdir(), 'empty-'));
  recorded.settings = {};
  try {
    await extension.activate(fakeContext() as never);
  } finally {
    process.env.PATH = savedPath;
  }
  assert.match(recorded.errors.at(-1) ?? '', /modeld was not found on PATH/);
  assert.equal(recorded.clients.length, 0);
  assert.match(recorded.statusTexts.at(-1) ?? '', /not found/);
});

test('activation starts modeld lsp with the settings', async () => {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'modeld-'));
  const program = path.join(directory, 'modeld');
  fs.writeFileSync(program, '#!/bin/sh\necho "modeld version is 0.1.0"\n', { mode: 0o755 });
  recorded.settings = { path: program, model: 'tiny-fim', contextTokens: 512 };
  await extension.activate(fakeContext() as never);
  const started = recorded.clients.at(-1);
  assert.ok(started?.started);
  assert.deepEqual(started.serverOptions, { command: program, args: ['lsp'] });
  assert.deepEqual(started.clientOptions.initializationOptions, { model: 'tiny-fim', contextTokens: 512 });
  assert.ok(recorded.commands.includes('modeld.pickModel') && recorded.commands.includes('modeld.fixSelection'));
  assert.match(recorded.statusTexts.at(-1) ?? '', /tiny-fim/);
});

test('the chat panel asks about the selection and shows the answer as text', () => {
  const range = { start: { line: 1, character: 0 }, end: { line: 3, character: 4 } };
  assert.deepEqual(chatParams('file:///a.py', range, 'Why?', 't1'), {
    textDocument: { uri: 'file:///a.py' },
    range,
    prompt: 'Why?',
    partialResultToken: 't1',
  });
  const page = renderPage('What is <b>?', 'n0');
  assert.match(page, /What is &lt;b&gt;\?/);
  assert.doesNotMatch(page, /<b>/);
  assert.match(page, /script-src 'nonce-n0'/);
  assert.match(page, /<script nonce="n0">/);
  // The answer is shown as text, never parsed as markup.
  assert.match(page, /answer\.textContent = /);
  assert.doesNotMatch(page, /innerHTML/);
  assert.deepEqual(answerMessage('It is <script>', false, true), {
    type: 'answer', text: 'It is <script>', done: false, canApply: true,
  });
});

test('the daemon is down, up, or has the model loaded, by its /api/ps', () => {
  assert.equal(healthFrom(undefined, 'tiny-fim'), 'down');
  assert.equal(healthFrom({ models: [] }, 'tiny-fim'), 'up');
  assert.equal(healthFrom({ models: [{ name: 'tiny-fim:latest' }] }, 'tiny-fim'), 'loaded');
  assert.equal(healthFrom({ models: [{ name: 'smollm2:135m' }] }, 'tiny-fim'), 'up');
  assert.equal(healthFrom({ models: 'garbage' }, 'tiny-fim'), 'up');
  assert.equal(healthFrom({ models: [null, 7] }, 'tiny-fim'), 'up');
  assert.equal(healthFrom(null, 'tiny-fim'), 'up');
  assert.ok(sameModel('smollm2:135m', 'smollm2:135m') && !sameModel('smollm2:360m', 'smollm2:135m'));
});

test('the status bar says loading before the first load and daemon down when it is', () => {
  assert.equal(stateText('generating', 'up'), 'loading');
  assert.equal(stateText('generating', 'loaded'), 'generating');
  assert.equal(stateText('ready', 'down'), 'daemon down');
  assert.equal(stateText('ready', 'loaded'), 'ready');
  assert.equal(stateText('not found', 'down'), 'not found');
});
