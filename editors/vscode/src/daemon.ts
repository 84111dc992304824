// What the status bar says of the daemon, read from its `/api/ps` every few seconds: down when
// it does not answer, and whether the configured model is loaded (a completion before it is
// shows "loading", the slow first load, rather than "generating"). Pure apart from `fetch`.

export type DaemonHealth = 'unknown' | 'down' | 'up' | 'loaded';

/** Whether a model name from `/api/ps` is the configured one (`name` means `name:latest`). */
export function sameModel(listed: string, configured: string): boolean {
  const withTag = (name: string) => (name.includes(':') ? name : `${name}:latest`);
  return withTag(listed) === withTag(configured);
}

/** The health read off one `/api/ps` answer (undefined: no answer). */
export function healthFrom(processes: unknown, configured: string): DaemonHealth {
  if (processes === undefined) {
    return 'down';
  }
  const models = (processes as { models?: unknown } | null)?.models;
  const loaded = Array.isArray(models) && models.some((model: { name?: unknown } | null) =>
    typeof model?.name === 'string' && sameModel(model.name, configured));
  return loaded ? 'loaded' : 'up';
}

/** Asks the daemon at `url` for its loaded models; undefined when it does not answer. */
export async function fetchProcesses(url: string): Promise<unknown> {
  try {
    const response = await fetch(`${url}/api/ps`, { signal: AbortSignal.timeout(2000) });
    return response.ok ? await response.json() : undefined;
  } catch {
    return undefined;
  }
}

/** The status bar's words: the state the client reports, coloured by the daemon's health. */
export function stateText(clientState: string, health: DaemonHealth): string {
  if (clientState === 'generating' && health !== 'loaded' && health !== 'unknown') {
    return 'loading';
  }
  if (health === 'down' && (clientState === 'ready' || clientState === 'starting')) {
    return 'daemon down';
  }
  return clientState;
}
