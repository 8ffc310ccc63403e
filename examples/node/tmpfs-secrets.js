'use strict';
/**
 * Read values that tmpfs-secrets delivered into a pod (Node.js 18+, no dependencies).
 *
 *   const { Secrets } = require('./tmpfs-secrets');
 *   const db = new Secrets('shop-db');        // /var/run/secrets/tmpfs-secrets.io/shop-db
 *   const password = db.get('RDS_PASSWORD');  // cached in memory for ttlMs
 *
 * The folder is a Secret volume written by kubelet's atomic writer: each version of the key set
 * is a timestamped directory, `..data` links to the current one, and each key is a link
 * `KEY -> ..data/KEY`. A rotation makes a new directory, renames a new `..data` link over the old
 * one and removes the old directory. So this reader checks `..data` at most once per `ttlMs` (one
 * readlink), reads files again only when it points somewhere new, reads every key through the
 * directory it resolved (all keys of one version), and retries when kubelet removed that
 * directory mid-read. `watch()` calls back as soon as `..data` changes (inotify via fs.watch).
 *
 * Without the folder (local development), values come from environment variables of the same
 * name, as the app read them before. A folder that exists but lacks the key is an error.
 */

const fs = require('node:fs');
const path = require('node:path');

const DEFAULT_ROOT = '/var/run/secrets/tmpfs-secrets.io';
const ROOT_ENV = 'TMPFS_SECRETS_ROOT';
const DATA_LINK = '..data';
const DEFAULT_TTL_MS = 2000;
const ATTEMPTS = 100;

class SecretNotFoundError extends Error {
  constructor(message) {
    super(message);
    this.name = 'SecretNotFoundError';
    this.code = 'SECRET_NOT_FOUND';
  }
}

function checkKey(key) {
  if (typeof key !== 'string' || !key || key === '.' || key.startsWith('..') || key.includes('/') || key.includes('\0')) {
    throw new TypeError(`${JSON.stringify(key)} is not a key name: use the file name, e.g. 'RDS_PASSWORD'`);
  }
}

class Secrets {
  /**
   * @param {string} [name] the ExternalSecret's name: the folder is `<root>/<name>`, root being
   *   $TMPFS_SECRETS_ROOT or /var/run/secrets/tmpfs-secrets.io (the default mount.path).
   * @param {{path?: string, ttlMs?: number, envFallback?: boolean, env?: object, now?: () => number}} [options]
   */
  constructor(name, options = {}) {
    const { ttlMs = DEFAULT_TTL_MS, envFallback = true, env = process.env, now = Date.now } = options;
    if (options.path) {
      this.path = options.path;
    } else if (name) {
      this.path = path.join(process.env[ROOT_ENV] || DEFAULT_ROOT, name);
    } else {
      throw new TypeError("give the ExternalSecret's name (new Secrets('shop-db')) or a folder ({path})");
    }
    this.ttlMs = ttlMs;
    this.envFallback = envFallback;
    this._env = env;
    this._now = now;
    this._checkedAt = null;
    this._version = null; // the `..data` target the cached values belong to
    this._values = new Map();
  }

  /** The value of `key` as text (UTF-8). With `fallback` given, a missing key returns it. */
  get(key, fallback) {
    try {
      return this.getBuffer(key).toString('utf8');
    } catch (err) {
      if (err instanceof SecretNotFoundError && fallback !== undefined) return fallback;
      throw err;
    }
  }

  /** The value of `key` as a Buffer, exactly as delivered. */
  getBuffer(key) {
    checkKey(key);
    this._refresh();
    if (this._values.has(key)) return this._values.get(key);
    if (this._version === null && !isDir(this.path)) return this._fromEnv(key);
    const value = this._readKey(key);
    this._values.set(key, value);
    return value;
  }

  /** Several values that belong together (a user and its password), all from one version. */
  getAll(keys) {
    keys.forEach(checkKey);
    this._refresh();
    if (this._version === null && !isDir(this.path)) {
      return Object.fromEntries(keys.map((k) => [k, this._fromEnv(k).toString('utf8')]));
    }
    for (let i = 0; i < ATTEMPTS; i++) {
      const version = this._version;
      const out = {};
      for (const key of keys) {
        if (!this._values.has(key)) this._values.set(key, this._readKey(key));
        out[key] = this._values.get(key).toString('utf8');
      }
      if (this._version === version) return out;
    }
    throw new Error(`${this.path} changed on every attempt to read it; try again`);
  }

  /** An opaque token that changes whenever kubelet delivers a new key set (null: no folder). */
  version() {
    this._refresh();
    return this._version;
  }

  /** The keys the folder holds now, sorted ([] without a folder). */
  keys() {
    this._refresh();
    return this._keys();
  }

  /** Forget cached values: the next get() checks the folder at once (e.g. after a login failed). */
  invalidate() {
    this._checkedAt = null;
  }

  /**
   * Call `onChange(version)` whenever kubelet swaps in a new key set. Watches the folder with
   * fs.watch (inotify), so the call comes right after the swap, not after the TTL. Returns an
   * object with close(). Without a folder it watches nothing (environment values never change).
   * With {persistent: false} the watch does not keep the process alive on its own.
   */
  watch(onChange, { persistent = true } = {}) {
    if (!isDir(this.path)) return { close() {} };
    this.invalidate();
    let last = this.version();
    const check = () => {
      this.invalidate();
      const now = this.version();
      if (now !== last) {
        last = now;
        onChange(now);
      }
    };
    const watcher = fs.watch(this.path, { persistent }, (_event, filename) => {
      if (!filename || String(filename).startsWith(DATA_LINK)) check();
    });
    return { close: () => watcher.close() };
  }

  _refresh() {
    const now = this._now();
    if (this._checkedAt !== null && now - this._checkedAt < this.ttlMs) return;
    const version = this._resolve();
    if (version === null || version !== this._version) this._values.clear();
    this._version = version;
    this._checkedAt = now;
  }

  _resolve() {
    try {
      return fs.readlinkSync(path.join(this.path, DATA_LINK));
    } catch (err) {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR' || err.code === 'EINVAL') return null;
      throw err;
    }
  }

  _folder() {
    return this._version ? path.join(this.path, this._version) : this.path;
  }

  _readKey(key) {
    for (let i = 0; i < ATTEMPTS; i++) {
      try {
        return fs.readFileSync(path.join(this._folder(), key));
      } catch (err) {
        if (err.code !== 'ENOENT') throw err;
        const version = this._resolve();
        if (version === null || version === this._version) break; // current, and lacks the key
        // kubelet swapped `..data` and removed the directory we resolved: start over on the new one.
        this._values.clear();
        this._version = version;
        this._checkedAt = this._now();
      }
    }
    const there = this._keys().join(', ') || 'none';
    throw new SecretNotFoundError(`no key '${key}' in ${this.path} (keys there: ${there})`);
  }

  _keys() {
    try {
      return fs.readdirSync(this._folder()).filter((n) => !n.startsWith('..')).sort();
    } catch {
      return [];
    }
  }

  _fromEnv(key) {
    if (this.envFallback && Object.prototype.hasOwnProperty.call(this._env, key)) {
      return Buffer.from(String(this._env[key]), 'utf8');
    }
    const hint = this.envFallback ? ` and there is no environment variable ${key}` : '';
    throw new SecretNotFoundError(`no value for '${key}': ${this.path} does not exist${hint}`);
  }
}

function isDir(p) {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

const shared = new Map();

/** One shared reader per ExternalSecret name, for code that just wants `getSecret(...)`. */
function secrets(name, options) {
  if (!shared.has(name)) shared.set(name, new Secrets(name, options));
  return shared.get(name);
}

module.exports = { Secrets, SecretNotFoundError, secrets, DEFAULT_ROOT, ROOT_ENV };
