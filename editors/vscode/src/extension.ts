// The VS Code extension: starts `modeld lsp` with vscode-languageclient (which shows the
// server's inline completions as ghost text), keeps a status bar item with the model, the
// server's state and the last completion's latency, picks the model from the daemon's
// `/api/tags`, runs the server's code tasks on the selection, and opens the chat panel.

import * as fs from 'fs';
import { execFile } from 'child_process';
import * as vscode from 'vscode';
import { LanguageClient, LanguageClientOptions, ServerOptions, State } from 'vscode-languageclient/node';

import sharedSettings from './shared-settings.json';
import { findModeld, parseVersion } from './binary';
import { openChat } from './chatPanel';
import { DaemonHealth, fetchProcesses, healthFrom, stateText } from './daemon';
import { serverSettings } from './settings';

const LANGUAGES = [
  'rust', 'python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact',
  'go', 'c', 'cpp', 'java', 'lua',
];
const SETTING_NAMES = Object.keys(sharedSettings);

/** The code actions of the server, by the command that runs them. */
const TASKS: Record<string, string> = {
  'modeld.fixSelection': 'modeld: Fix this code',
  'modeld.documentSelection': 'modeld: Document this code',
  'modeld.testSelection': 'modeld: Write tests for this code',
};

let client: LanguageClient | undefined;

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function settingsNow(): Record<string, unknown> {
  const configuration = vscode.workspace.getConfiguration('modeld');
  return serverSettings(SETTING_NAMES, (name) => configuration.get(name));
}

function daemonUrl(): string {
  const host = process.env.OLLAMA_HOST || '127.0.0.1:11434';
  return host.startsWith('http') ? host : `http://${host}`;
}

function configuredModel(): string {
  const configured = settingsNow().model;
  return typeof configured === 'string' ? configured : 'smollm2:135m';
}

class Status {
  private readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  private state = 'starting';
  private health: DaemonHealth = 'unknown';
  private latency?: number;
  private poller?: ReturnType<typeof setInterval>;

  constructor() {
    this.item.command = 'modeld.pickModel';
    this.render();
    this.item.show();
  }

  set(state: string): void {
    this.state = state;
    this.render();
  }

  completed(milliseconds: number): void {
    this.latency = milliseconds;
    this.state = 'ready';
    this.health = 'loaded';
    this.render();
  }

  /** Reads the daemon's health now and every five seconds. */
  watchDaemon(): void {
    const poll = async () => {
      this.health = healthFrom(await fetchProcesses(daemonUrl()), configuredModel());
      this.render();
    };
    void poll();
    this.poller = setInterval(() => void poll(), 5000);
    this.poller.unref?.();
  }

  render(): void {
    const latency = this.latency === undefined ? '' : ` · ${Math.round(this.latency)} ms`;
    this.item.text = `$(sparkle) ${configuredModel()} · ${stateText(this.state, this.health)}${latency}`;
    this.item.tooltip = `modeld at ${daemonUrl()}: click to pick the model`;
  }

  dispose(): void {
    if (this.poller) {
      clearInterval(this.poller);
    }
    this.item.dispose();
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const status = new Status();
  context.subscriptions.push(status);
  const configured = vscode.workspace.getConfiguration('modeld').get<string | null>('path');
  const binary = findModeld(configured, process.env.PATH ?? '', isExecutable);
  if (!binary) {
    status.set('not found');
    const where = configured ? `at ${configured}` : 'on PATH';
    const choice = await vscode.window.showErrorMessage(
      `modeld was not found ${where}. Run scripts/quickstart.sh from a clone of modeld, or set modeld.path.`,
      'Open the README',
    );
    if (choice) {
      await vscode.commands.executeCommand('markdown.showPreview', vscode.Uri.joinPath(context.extensionUri, 'README.md'));
    }
    return;
  }
  execFile(binary, ['--version'], { timeout: 10000 }, (error, stdout, stderr) => {
    const report = parseVersion(`${stdout}${stderr}`);
    if (error && !report.client) {
      void vscode.window.showErrorMessage(`${binary} --version failed: ${error.message}`);
    } else if (!report.daemon) {
      status.set('daemon starting');
    }
  });

  const serverOptions: ServerOptions = { command: binary, args: ['lsp'] };
  const clientOptions: LanguageClientOptions = {
    documentSelector: LANGUAGES.map((language) => ({ scheme: 'file', language })),
    initializationOptions: settingsNow(),
    synchronize: { configurationSection: 'modeld' },
    middleware: {
      provideInlineCompletionItems: async (document, position, inlineContext, token, next) => {
        const started = Date.now();
        status.set('generating');
        const result = await next(document, position, inlineContext, token);
        status.completed(Date.now() - started);
        return result;
      },
    },
  };
  client = new LanguageClient('modeld', 'modeld', serverOptions, clientOptions);
  status.watchDaemon();
  context.subscriptions.push(
    client.onDidChangeState((change) => {
      status.set(change.newState === State.Running ? 'ready' : change.newState === State.Starting ? 'starting' : 'stopped');
    }),
    vscode.workspace.onDidChangeConfiguration((change) => {
      if (change.affectsConfiguration('modeld')) {
        status.render();
      }
    }),
    vscode.commands.registerCommand('modeld.pickModel', pickModel),
    vscode.commands.registerCommand('modeld.explainSelection', explainSelection),
    vscode.commands.registerCommand('modeld.chat', () => (client ? openChat(client) : undefined)),
    ...Object.entries(TASKS).map(([command, title]) =>
      vscode.commands.registerCommand(command, () => runTask(title)),
    ),
  );
  await client.start();
}

async function pickModel(): Promise<void> {
  let names: string[];
  try {
    const response = await fetch(`${daemonUrl()}/api/tags`);
    const tags = (await response.json()) as { models?: { name: string }[] };
    names = (tags.models ?? []).map((model) => model.name);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    void vscode.window.showErrorMessage(`modeld: the daemon at ${daemonUrl()} does not answer (${reason})`);
    return;
  }
  if (names.length === 0) {
    void vscode.window.showWarningMessage('modeld: no models are installed (modeld create ...)');
    return;
  }
  const choice = await vscode.window.showQuickPick(names, { placeHolder: 'The model for completion and chat' });
  if (choice) {
    await vscode.workspace.getConfiguration('modeld').update('model', choice, vscode.ConfigurationTarget.Global);
  }
}

function selectionRange(editor: vscode.TextEditor): vscode.Range {
  return editor.selection.isEmpty ? new vscode.Range(editor.selection.active, editor.selection.active) : editor.selection;
}

async function explainSelection(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor || !client) {
    return;
  }
  const range = selectionRange(editor);
  const answer = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'modeld: explaining' },
    () =>
      client!.sendRequest<{ content?: string }>('workspace/executeCommand', {
        command: 'modeld.explain',
        arguments: [{ uri: editor.document.uri.toString(), range: client!.code2ProtocolConverter.asRange(range) }],
      }),
  );
  const document = await vscode.workspace.openTextDocument({ content: answer?.content ?? '', language: 'markdown' });
  await vscode.window.showTextDocument(document, vscode.ViewColumn.Beside);
}

async function runTask(title: string): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    return;
  }
  const actions = await vscode.commands.executeCommand<vscode.CodeAction[]>(
    'vscode.executeCodeActionProvider',
    editor.document.uri,
    selectionRange(editor),
    undefined,
    1,
  );
  const action = (actions ?? []).find((candidate) => candidate.title === title);
  if (!action) {
    void vscode.window.showWarningMessage(`modeld: "${title}" is not offered here`);
    return;
  }
  if (action.edit) {
    await vscode.workspace.applyEdit(action.edit);
  }
  if (action.command) {
    const argumentsOfCommand = (action.command.arguments ?? []) as unknown[];
    await vscode.commands.executeCommand(action.command.command, ...argumentsOfCommand);
  }
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
