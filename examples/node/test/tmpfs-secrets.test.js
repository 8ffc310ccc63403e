'use strict';
// Tests of the reader on a folder laid out like kubelet's atomic writer (run: node --test test/).
// The clock is a counter the tests move, never wall time.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Secrets, SecretNotFoundError } = require('../tmpfs-secrets');

class AtomicWriter {
  constructor(folder) {
    this.folder = folder;
    this.serial = 0;
    fs.mkdirSync(folder, { recursive: true });
  }

  write(values, { removeOld = true } = {}) {
    const version = `..2026_11_29_10_00_00.${String(this.serial++).padStart(9, '0')}`;
    fs.mkdirSync(path.join(this.folder, version));
    for (const [k, v] of Object.entries(values)) fs.writeFileSync(path.join(this.folder, version, k), v);
    const old = this.current();
    fs.symlinkSync(version, path.join(this.folder, '..data_tmp'));
    fs.renameSync(path.join(this.folder, '..data_tmp'), path.join(this.folder, '..data'));
    for (const k of Object.keys(values)) {
      const link = path.join(this.folder, k);
      if (!fs.existsSync(link)) fs.symlinkSync(`..data/${k}`, link);
    }
    if (old && removeOld) fs.rmSync(path.join(this.folder, old), { recursive: true });
    return version;
  }

  current() {
    try {
      return fs.readlinkSync(path.join(this.folder, '..data'));
    } catch {
      return null;
    }
  }
}

function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tmpfs-secrets-'));
  const clock = { now: 1000 };
  return { dir, writer: new AtomicWriter(path.join(dir, 'shop-db')), clock, now: () => clock.now };
}

test('reads a key and serves it from memory within the TTL', () => {
  const { writer, clock, now } = setup();
  const version = writer.write({ RDS_PASSWORD: 'first' });
  const s = new Secrets(null, { path: writer.folder, ttlMs: 5000, now });
  assert.strictEqual(s.get('RDS_PASSWORD'), 'first');
  fs.writeFileSync(path.join(writer.folder, version, 'RDS_PASSWORD'), 'changed in place');
  clock.now += 6000; // same ..data target: still not re-read
  assert.strictEqual(s.get('RDS_PASSWORD'), 'first');
});

test('a new version is read after the TTL, not before', () => {
  const { writer, clock, now } = setup();
  writer.write({ RDS_PASSWORD: 'first' });
  const s = new Secrets(null, { path: writer.folder, ttlMs: 5000, now });
  assert.strictEqual(s.get('RDS_PASSWORD'), 'first');
  const before = s.version();
  writer.write({ RDS_PASSWORD: 'rotated' }, { removeOld: false });
  clock.now += 4000;
  assert.strictEqual(s.get('RDS_PASSWORD'), 'first');
  clock.now += 1000;
  assert.strictEqual(s.get('RDS_PASSWORD'), 'rotated');
  assert.notStrictEqual(s.version(), before);
});

test('a swap that removes the resolved version mid-read moves to the new one', () => {
  const { writer, now } = setup();
  writer.write({ RDS_USER: 'u1', RDS_PASSWORD: 'p1' });
  const s = new Secrets(null, { path: writer.folder, ttlMs: 60000, now });
  assert.strictEqual(s.get('RDS_USER'), 'u1');
  writer.write({ RDS_USER: 'u2', RDS_PASSWORD: 'p2' });
  assert.strictEqual(s.get('RDS_PASSWORD'), 'p2');
  assert.deepStrictEqual(s.getAll(['RDS_USER', 'RDS_PASSWORD']), { RDS_USER: 'u2', RDS_PASSWORD: 'p2' });
});

test('getAll never mixes versions across many swaps', () => {
  const { writer } = setup();
  const s = new Secrets(null, { path: writer.folder, ttlMs: 0 });
  writer.write({ RDS_USER: '0', RDS_PASSWORD: '0' });
  for (let i = 1; i <= 200; i++) {
    const pair = s.getAll(['RDS_USER', 'RDS_PASSWORD']);
    assert.strictEqual(pair.RDS_USER, pair.RDS_PASSWORD);
    writer.write({ RDS_USER: String(i), RDS_PASSWORD: String(i) });
    assert.strictEqual(s.get('RDS_PASSWORD'), String(i));
  }
});

test('watch() calls back when ..data changes', async () => {
  const { writer } = setup();
  writer.write({ RDS_PASSWORD: 'first' });
  const s = new Secrets(null, { path: writer.folder, ttlMs: 60000 });
  assert.strictEqual(s.get('RDS_PASSWORD'), 'first');
  const changed = new Promise((resolve) => {
    const w = s.watch((version) => {
      w.close();
      resolve(version);
    });
  });
  const version = writer.write({ RDS_PASSWORD: 'rotated' });
  assert.strictEqual(await changed, version);
  assert.strictEqual(s.get('RDS_PASSWORD'), 'rotated'); // watch() refreshed the cache, TTL or not
});

test('without a folder values come from the environment', () => {
  const { dir } = setup();
  const s = new Secrets(null, { path: path.join(dir, 'absent'), env: { RDS_PASSWORD: 'from-env' } });
  assert.strictEqual(s.get('RDS_PASSWORD'), 'from-env');
  assert.strictEqual(s.version(), null);
  assert.throws(() => s.get('RDS_USER'), SecretNotFoundError);
  assert.strictEqual(s.get('RDS_USER', 'default'), 'default');
  const off = new Secrets(null, { path: path.join(dir, 'absent'), envFallback: false, env: { RDS_PASSWORD: 'x' } });
  assert.throws(() => off.get('RDS_PASSWORD'), /does not exist/);
});

test('a mounted folder never falls back to the environment, and errors hold no values', () => {
  const { writer } = setup();
  writer.write({ RDS_PASSWORD: 'mounted-value' });
  const s = new Secrets(null, { path: writer.folder, env: { RDS_USER: 'env-value' } });
  assert.throws(
    () => s.get('RDS_USER'),
    (err) =>
      err instanceof SecretNotFoundError &&
      err.message.includes('RDS_PASSWORD') && // names the keys that are there
      !err.message.includes('mounted-value') &&
      !err.message.includes('env-value'),
  );
});

test('a key is a file name', () => {
  const { writer } = setup();
  writer.write({ RDS_PASSWORD: 'x' });
  const s = new Secrets(null, { path: writer.folder });
  for (const key of ['', '..data', '../etc/passwd', 'a/b', '.']) assert.throws(() => s.get(key), TypeError);
});

test('the default folder is the default mount path under TMPFS_SECRETS_ROOT', () => {
  const saved = process.env.TMPFS_SECRETS_ROOT;
  delete process.env.TMPFS_SECRETS_ROOT;
  assert.strictEqual(new Secrets('shop-db').path, '/var/run/secrets/tmpfs-secrets.io/shop-db');
  process.env.TMPFS_SECRETS_ROOT = '/mnt/x';
  assert.strictEqual(new Secrets('shop-db').path, '/mnt/x/shop-db');
  if (saved === undefined) delete process.env.TMPFS_SECRETS_ROOT;
  else process.env.TMPFS_SECRETS_ROOT = saved;
});
