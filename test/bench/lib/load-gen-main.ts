// Load generator process: `node load-gen-main.ts --mode open|sequential ...` prints one JSON LoadResult on stdout.
import { parseArgs } from 'node:util';
import { runOpenLoop, runSequential } from './open-loop.ts';

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'open' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    authority: { type: 'string', default: 'bench.default' },
    path: { type: 'string', default: '/' },
    rate: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '10000' },
    warmup: { type: 'string', default: '2000' },
    connections: { type: 'string', default: '32' },
    spin: { type: 'string', default: '1' },
    dump: { type: 'string' },
  },
});

async function main(): Promise<void> {
  const port = Number(values.port);
  if (!(port > 0 && port < 65536)) throw new Error(`--port: "${values.port}" is not a port`);
  const target = { host: values.host, port, authority: values.authority, path: values.path };
  const durationMs = Number(values.duration);
  const warmupMs = Number(values.warmup);
  const result =
    values.mode === 'sequential'
      ? await runSequential({ ...target, durationMs, warmupMs })
      : await runOpenLoop({ ...target, durationMs, warmupMs, rate: Number(values.rate), connections: Number(values.connections), spin: values.spin !== '0', dumpPath: values.dump });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`load-gen: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
