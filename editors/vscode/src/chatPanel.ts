// The chat panel: a webview that streams the answer to a question about the selection (the
// server's `modeld/chat`, whose partial results arrive as `$/progress`), and a button that
// applies the answer's code edit. `renderPage` and `chatParams` are pure.

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

/**
 * The panel's page: the question and the answer so far, in a page that runs no script but
 * its own (a nonce'd one that posts the apply button's click) and loads nothing.
 */
export function renderPage(prompt: string, answer: string, done: boolean, canApply: boolean, nonce: string): string {
  const button = done && canApply ? '<button id="apply">Apply the code</button>' : '';
  const state = done ? '' : '<p><em>…</em></p>';
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-${nonce}';">
<style>pre { white-space: pre-wrap; }</style></head>
<body><h3>${escapeHtml(prompt)}</h3><pre id="answer">${escapeHtml(answer)}</pre>${state}${button}
<script nonce="${nonce}">
const vscode = acquireVsCodeApi();
document.getElementById('apply')?.addEventListener('click', () => vscode.postMessage({ type: 'apply' }));
</script></body></html>`;
}

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
  let result: ChatResult | undefined;
  const render = (done: boolean) => {
    panel.webview.html = renderPage(prompt, answer, done, Boolean(result?.edit), nonce);
  };
  render(false);
  const progress = client.onProgress(new ProgressType<ChatPiece>(), token, (piece) => {
    answer += piece.content ?? '';
    render(false);
  });
  panel.webview.onDidReceiveMessage(async (message: { type?: string }) => {
    if (message.type === 'apply' && result?.edit) {
      const edit = await client.protocol2CodeConverter.asWorkspaceEdit(result.edit as WorkspaceEdit);
      await vscode.workspace.applyEdit(edit);
    }
  });
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
  render(true);
}
