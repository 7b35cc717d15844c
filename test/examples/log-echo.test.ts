// Tests the demo's log echo: only warnings, errors and registry edits reach the terminal, and each line once.
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LogEcho } from '../../examples/demo/log-echo.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const line = (o: object) => `${JSON.stringify(o)}\n`;

describe('LogEcho', () => {
  it('shows warnings, errors and applied registry edits once each, skipping start-up and half-written lines', () => {
    const dir = mkdtempSync(join(tmpdir(), 'skein-log-echo-'));
    dirs.push(dir);
    const path = join(dir, 'cp.log');
    const echo = new LogEcho(path, 'control plane');
    expect(echo.read()).toEqual([]); // no file yet
    writeFileSync(path, line({ level: 'warn', msg: 'at start-up' }));
    echo.skip();
    appendFileSync(path, line({ level: 'info', msg: 'xds stream opened' }));
    appendFileSync(path, line({ level: 'error', msg: 'registry problem; still serving the last good state', message: 'r.yaml: document 3: bad' }));
    appendFileSync(path, `${line({ level: 'info', msg: 'registry file applied', changedServices: 'demo/web' })}not json\n{"level":"warn","msg":"half`);
    expect(echo.read()).toEqual([
      'control plane: ERROR registry problem; still serving the last good state (message: r.yaml: document 3: bad)',
      'control plane: registry file applied (changedServices: demo/web)',
    ]);
    appendFileSync(path, ' written"}\n');
    expect(echo.read()).toEqual(['control plane: WARN half written']);
    expect(echo.read()).toEqual([]);
  });
});
