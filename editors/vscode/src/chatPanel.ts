// The chat panel: a webview that streams the answer to a question about the selection (the
// server's `modeld/chat`, whose partial results arrive as `$/progress`, each posted to the page
// as a message), and a button that applies the answer's code edit. The question is sent once
// the page has loaded, so that the answer is seen growing. `renderPage`, `answerMessage` and
// `chatParams` are pure.

import * as vscode from 'vscode';
import { LanguageClient, ProgressType, WorkspaceEdit } from 'vscode-languageclient/node';

/** What the server sends with each partial result, and at the end. */
interface ChatPiece {
  content?: string;
}
interface ChatResult {
  content: string;
  edit?: unknown;
}

/** The `modeld/chat` params for a question about `range` of the document at `uri`. */
export function chatParams(
  uri: string,
  range: { start: { line: number; character: number }; end: { line: number; character: number } },
  prompt: string,
  token: string,
): Record<string, unknown> {
  return { textDocument: { uri }, range, prompt, partialResultToken: token };
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** What the panel's page is told: the whole answer so far (so a message lost or a page
 * reloaded while hidden is made good by the next), whether it is finished, and whether the
 * answer has code to apply. */
export interface AnswerMessage {
  type: 'answer';
  text: string;
  done: boolean;
  canApply: boolean;
}

export function answerMessage(text: string, done: boolean, canApply: boolean): AnswerMessage {
  return { type: 'answer', text, done, canApply };
}

/**
 * The panel's page, written once: the question, and a nonce'd script that shows each
 * `AnswerMessage` as text (never as markup), counts in the answer's `data-shown` how many
 * different texts it has shown, and posts `ready` when it loads and `apply` on the button's
 * click. It runs no other script and loads nothing.
 */
export function renderPage(prompt: string, nonce: string): string {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-${nonce}';">
<style>pre { white-space: pre-wrap; }</style></head>
<body><h3>${escapeHtml(prompt)}</h3><pre id="answer"></pre><p id="pending"><em>…</em></p>
<button id="apply" hidden>Apply the code</button>
<script nonce="${nonce}">
const vscode = acquireVsCodeApi();
const answer = document.getElementById('answer');
const pending = document.getElementById('pending');
const apply = document.getElementById('apply');
window.addEventListener('message', (event) => {
  const message = event.data;
  if (!message || message.type !== 'answer') return;
  const text = String(message.text);
  if (answer.textContent !== text) {
    answer.textContent = text;
    answer.dataset.shown = String(Number(answer.dataset.shown || 0) + 1);
  }
  pending.hidden = !!message.done;
  apply.hidden = !(message.done && message.canApply);
});
apply.addEventListener('click', () => vscode.postMessage({ type: 'apply' }));
vscode.postMessage({ type: 'ready' });
</script></body></html>`;
}

/** How long the question waits for the panel's page to load. */
const PAGE_LOAD_WAIT_MS = 5000;

/** Asks about the active editor's selection and streams the answer into a panel. */
export async function openChat(client: LanguageClient): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    return;
  }
  const prompt = await vscode.window.showInputBox({ prompt: 'Ask modeld about the selection' });
  if (!prompt) {
    return;
  }
  const panel = vscode.window.createWebviewPanel('modeld.chat', 'modeld chat', vscode.ViewColumn.Beside, {
    enableScripts: true,
  });
  const nonce = Math.random().toString(36).slice(2);
  const token = `modeld-chat-${Date.now()}`;
  let answer = '';
  let done = false;
  let result: ChatResult | undefined;
  const show = () => void panel.webview.postMessage(answerMessage(answer, done, Boolean(result?.edit)));
  let pageReady: () => void = () => {};
  const pageLoaded = new Promise<void>((resolve) => (pageReady = resolve));
  panel.webview.html = renderPage(prompt, nonce);
  const progress = client.onProgress(new ProgressType<ChatPiece>(), token, (piece) => {
    answer += piece.content ?? '';
    show();
  });
  panel.webview.onDidReceiveMessage(async (message: { type?: string }) => {
    if (message.type === 'ready') {
      pageReady();
      show();
    } else if (message.type === 'apply' && result?.edit) {
      const edit = await client.protocol2CodeConverter.asWorkspaceEdit(result.edit as WorkspaceEdit);
      await vscode.workspace.applyEdit(edit);
    }
  });
  // A page that has not loaded would show the answer only when finished; one that never
  // loads (it should not happen) delays the question by at most a few seconds.
  await Promise.race([pageLoaded, new Promise((resolve) => setTimeout(resolve, PAGE_LOAD_WAIT_MS))]);
  try {
    const selection = client.code2ProtocolConverter.asRange(editor.selection);
    result = await client.sendRequest<ChatResult>(
      'modeld/chat',
      chatParams(editor.document.uri.toString(), selection, prompt, token),
    );
    answer = result.content;
  } catch (error) {
    answer += `\n\n(modeld: ${error instanceof Error ? error.message : String(error)})`;
  } finally {
    progress.dispose();
  }
  done = true;
  show();
}
