// The extension's settings: described once, in `editors/settings.json` (which the language
// server's tests check too), turned into `package.json`'s contributions and into the
// settings object sent to the server. Pure: no `vscode` import.

/** One setting as `editors/settings.json` describes it. */
export interface SharedSetting {
  type: string | string[];
  default: unknown;
  description: string;
  items?: unknown;
  minimum?: number;
  maximum?: number;
}

/** Settings of the extension itself, not sent to the server. */
export const EXTENSION_SETTINGS: Record<string, SharedSetting> = {
  path: {
    type: ['string', 'null'],
    default: null,
    description: 'The modeld program; when unset, the `modeld` on PATH.',
  },
};

/** `contributes.configuration.properties` of `package.json`: every setting, as `modeld.<name>`. */
export function configurationProperties(shared: Record<string, SharedSetting>): Record<string, SharedSetting> {
  const properties: Record<string, SharedSetting> = {};
  for (const [name, setting] of Object.entries({ ...EXTENSION_SETTINGS, ...shared })) {
    properties[`modeld.${name}`] = { ...setting };
  }
  return properties;
}

/**
 * The settings the server gets: each shared setting's value, unset (`null` or `undefined`)
 * ones left out so that the server keeps its own default.
 */
export function serverSettings(
  names: string[],
  value: (name: string) => unknown,
): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const name of names) {
    const current = value(name);
    if (current !== null && current !== undefined) {
      settings[name] = current;
    }
  }
  return settings;
}
