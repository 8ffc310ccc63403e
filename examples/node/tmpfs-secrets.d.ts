// Types for tmpfs-secrets.js, for TypeScript apps such as a Next.js app with `next.config.ts`.

export declare const DEFAULT_ROOT: string;
export declare const ROOT_ENV: string;

export declare class SecretNotFoundError extends Error {
  code: 'SECRET_NOT_FOUND';
}

export interface SecretsOptions {
  /** The folder itself, instead of `<root>/<name>`. */
  path?: string;
  /** How long values are served from memory before `..data` is checked again (default 2000). */
  ttlMs?: number;
  /** Read environment variables when the folder does not exist (default true). */
  envFallback?: boolean;
  env?: Record<string, string | undefined>;
  now?: () => number;
}

export declare class Secrets {
  constructor(name?: string | null, options?: SecretsOptions);
  readonly path: string;
  get(key: string, fallback?: string): string;
  getBuffer(key: string): Buffer;
  getAll<K extends string>(keys: readonly K[]): Record<K, string>;
  version(): string | null;
  keys(): string[];
  invalidate(): void;
  watch(onChange: (version: string | null) => void, options?: { persistent?: boolean }): { close(): void };
}

/** One shared reader per ExternalSecret name. */
export declare function secrets(name: string, options?: SecretsOptions): Secrets;
