// Finding the `modeld` program: the `modeld.path` setting, else `modeld` on PATH, checked by
// running `modeld --version`. Pure apart from the file checks and the run it is given.

import * as path from 'path';

/** Where `modeld` is, or undefined. */
export function findModeld(
  configured: string | null | undefined,
  searchPath: string,
  isExecutable: (file: string) => boolean,
): string | undefined {
  if (configured) {
    return isExecutable(configured) ? configured : undefined;
  }
  for (const directory of searchPath.split(path.delimiter)) {
    if (!directory) {
      continue;
    }
    const candidate = path.join(directory, 'modeld');
    if (isExecutable(candidate)) {
      return candidate;
    }
  }
  return undefined;
}

/** What `modeld --version` says: the client's version, and the daemon's when one answers. */
export interface VersionReport {
  client?: string;
  daemon?: string;
}

export function parseVersion(output: string): VersionReport {
  const daemon = /modeld version is (\S+)/.exec(output)?.[1];
  const client = /client version is (\S+)/.exec(output)?.[1] ?? daemon;
  return { client, daemon };
}
