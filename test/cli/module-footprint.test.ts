// What the long-running commands load at start: nothing heavy that only some configurations use.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));


/** Imports `entry` in a fresh Node and returns every module URL it resolved under node_modules. */
async function loadedPackages(entry: string): Promise<string[]> {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = new Set();
    registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); if (r.url.includes('/node_modules/')) seen.add(r.url); return r; } });
    await import(${JSON.stringify(entry)});
    process.stdout.write(JSON.stringify([...seen]));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT });
  return JSON.parse(stdout) as string[];
}

describe('module footprint', () => {
  it('control plane: does not load the Kubernetes API client (tens of MB of heap) unless --kubernetes is given', async () => {
    const urls = await loadedPackages(`${ROOT}control-plane/main.ts`);
    expect(urls.some((u) => u.includes('/@grpc/grpc-js/'))).toBe(true); // the hook saw the real imports
    const apiClient = urls.filter((u) => /@kubernetes\/client-node\/dist\/(index|api|gen\/apis\/|gen\/types\/)/.test(u));
    expect(apiClient).toEqual([]);
  });

  it('sidecar: does not load undici (the inbound L7 authorization path) until a connection needs it', async () => {
    const urls = await loadedPackages(`${ROOT}sidecar/main.ts`);
    expect(urls.some((u) => u.includes('/@grpc/grpc-js/'))).toBe(true);
    // Its llhttp build (wasm and constants) is the sidecar's HTTP/1 parser; the client is what must wait.
    expect(urls.filter((u) => u.includes('/node_modules/undici/') && !u.includes('/undici/lib/llhttp/'))).toEqual([]);
  });

  it("sidecar: does not load Node's own bundled undici (an ESM import of node:http would, through its lazy WebSocket export)", async () => {
    const script = `await import(${JSON.stringify(`${ROOT}sidecar/main.ts`)}); process.stdout.write(JSON.stringify(process.moduleLoadList));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT });
    const loaded = JSON.parse(stdout) as string[];
    expect(loaded).toContain('NativeModule http2'); // the list is the real one
    expect(loaded.filter((m) => m.includes('internal/deps/undici') || m.includes('internal/crypto/webcrypto'))).toEqual([]);
  });
});
