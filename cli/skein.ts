#!/usr/bin/env node
// The `skein` command: dispatches to one subcommand, loading only that side's code.
import { CONTROL_PLANE_PROFILE, leanExec } from './lean-exec.ts';

const HELP = `skein — a service mesh on Kubernetes discovery, speaking Envoy's xDS v3

Usage: skein <command> [flags]

Commands:
  control-plane   watch a registry (file or Kubernetes) and serve xDS to proxies
  sidecar         run the proxy beside one workload
  proxy-status    show each connected proxy's config versions and rejected config (NACKs)
  token           print a bootstrap token for a namespace and service account (local CA)
  cert            issue a mesh certificate and key for a native proxy (haproxy, Envoy) from the local CA
  demo            run the local demo mesh (--smoke: a short self-check that exits)
  version         print Skein's version and the Node.js it runs on (also --version)

Run 'skein <command> --help' for a command's flags.`;

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  'control-plane': async () => {
    // Restart with glibc's large-buffer reuse switched off (see CONTROL_PLANE_PROFILE) and the compile cache.
    leanExec(CONTROL_PLANE_PROFILE);
    return (await import('../control-plane/main.ts')).runControlPlane;
  },
  sidecar: async () => {
    // One sidecar runs beside every workload: restart with the compile cache (no TypeScript stripper in memory) and
    // small-heap V8 flags before loading anything.
    leanExec();
    return (await import('../sidecar/main.ts')).runSidecar;
  },
  'proxy-status': async () => (await import('../control-plane/cli/proxy-status.ts')).runProxyStatus,
  token: async () => (await import('../control-plane/cli/token.ts')).runToken,
  cert: async () => (await import('../control-plane/cli/cert.ts')).runCert,
  demo: async () => (await import('../examples/demo/launcher.ts')).runDemo,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${HELP}\n`);
    return name ? 0 : 2;
  }
  if (name === 'version' || name === '--version' || name === '-v') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`skein ${pkg.version} (node ${process.versions.node})\n`);
    return 0;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`skein: unknown command "${name}"\n\n${HELP}\n`);
    return 2;
  }
  return (await load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    process.stderr.write(`skein: ${e.code ? `[${e.code}] ` : ''}${e.message ?? String(err)}\n`);
    // A fatal error can leave servers or watchers open (a start-up that failed halfway): they must not keep the
    // process alive. stderr is written synchronously on Linux (files and pipes).
    process.exit(1);
  },
);
