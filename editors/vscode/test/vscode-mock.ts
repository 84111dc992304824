// A hand-written stand-in for the `vscode` module and for vscode-languageclient, so that the
// extension's activation runs under plain Node: it records what the extension asked for.

import Module from 'node:module';

export const recorded = {
  errors: [] as string[],
  commands: [] as string[],
  statusTexts: [] as string[],
  clients: [] as { serverOptions: unknown; clientOptions: { initializationOptions?: unknown }; started: boolean }[],
  settings: {} as Record<string, unknown>,
};

class Disposable {
  dispose(): void {}
}

export const vscodeMock = {
  StatusBarAlignment: { Left: 1, Right: 2 },
  ConfigurationTarget: { Global: 1 },
  ProgressLocation: { Notification: 15 },
  ViewColumn: { Beside: -2 },
  Uri: { joinPath: (...parts: unknown[]) => parts, parse: (text: string) => text },
  Range: class {},
  window: {
    createStatusBarItem: () => {
      const item = {
        command: '',
        tooltip: '',
        show: () => {},
        dispose: () => {},
        set text(value: string) {
          recorded.statusTexts.push(value);
        },
      };
      return item;
    },
    showErrorMessage: (message: string) => {
      recorded.errors.push(message);
      return Promise.resolve(undefined);
    },
    showWarningMessage: () => Promise.resolve(undefined),
  },
  workspace: {
    getConfiguration: () => ({ get: (name: string) => recorded.settings[name] }),
    onDidChangeConfiguration: () => new Disposable(),
  },
  commands: {
    registerCommand: (name: string) => {
      recorded.commands.push(name);
      return new Disposable();
    },
    executeCommand: () => Promise.resolve(undefined),
  },
};

class FakeLanguageClient {
  constructor(_id: string, _name: string, serverOptions: unknown, clientOptions: { initializationOptions?: unknown }) {
    this.entry = { serverOptions, clientOptions, started: false };
    recorded.clients.push(this.entry);
  }
  private readonly entry: { serverOptions: unknown; clientOptions: { initializationOptions?: unknown }; started: boolean };
  onDidChangeState(): Disposable {
    return new Disposable();
  }
  start(): Promise<void> {
    this.entry.started = true;
    return Promise.resolve();
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
}

const languageClientMock = {
  LanguageClient: FakeLanguageClient,
  ProgressType: class {},
  State: { Stopped: 1, Running: 2, Starting: 3 },
};

const moduleWithLoad = Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown };
const originalLoad = moduleWithLoad._load;
moduleWithLoad._load = function (request: string, ...rest: unknown[]) {
  if (request === 'vscode') {
    return vscodeMock;
  }
  if (request === 'vscode-languageclient/node') {
    return languageClientMock;
  }
  return originalLoad.call(this, request, ...rest);
};
