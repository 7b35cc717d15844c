// Loads Envoy's FULL protos (with their protoc-gen-validate options) from grpc-js-xds's deps, resolving Any types on demand.
import { accessSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const xdsDeps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const protobufjsDir = dirname(require.resolve('protobufjs/package.json'));
const INCLUDE_DIRS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(xdsDeps, d));

function exists(path: string): boolean {
  try {
    accessSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Where an import lives: protobufjs's bundled google/protobuf files, else the first include dir that has it. */
function resolveImport(target: string): string {
  if (target.startsWith('google/protobuf/')) {
    // The common well-known types are built into protobufjs; descriptor.proto (PGV's extendee) ships as a file.
    const bundled = join(protobufjsDir, target);
    return exists(bundled) && target.endsWith('descriptor.proto') ? bundled : target;
  }
  for (const dir of INCLUDE_DIRS) {
    const candidate = join(dir, target);
    if (exists(candidate)) return candidate;
  }
  return target;
}

/** A protobufjs root of Envoy's own protos that can load the package of any type URL it is asked about. */
export class EnvoyProtos {
  readonly root: protobuf.Root;

  constructor(files: readonly string[]) {
    this.root = new protobuf.Root();
    this.root.resolvePath = (_origin, target) => resolveImport(target);
    this.root.loadSync([...files], { keepCase: true });
    this.root.resolveAll();
  }

  /** The message a type URL names, loading every .proto of its package directory if needed; undefined if none has it. */
  typeOf(typeUrl: string): protobuf.Type | undefined {
    const name = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
    const found = this.lookup(name);
    if (found) return found;
    const pkgDir = name.split('.').slice(0, -1).join('/');
    const files: string[] = [];
    for (const dir of INCLUDE_DIRS) {
      const full = join(dir, pkgDir);
      if (!exists(full)) continue;
      for (const f of readdirSync(full)) if (f.endsWith('.proto')) files.push(join(pkgDir, f));
    }
    if (files.length === 0) return undefined;
    this.root.loadSync(files, { keepCase: true });
    this.root.resolveAll();
    return this.lookup(name);
  }

  private lookup(name: string): protobuf.Type | undefined {
    try {
      return this.root.lookupType(name);
    } catch {
      return undefined;
    }
  }

  /** Decodes bytes into a plain object in the shape Envoy's JSON uses (Anys expanded with "@type", enums by name). */
  decodeJson(type: protobuf.Type, bytes: Uint8Array): Record<string, unknown> {
    return type.toObject(type.decode(bytes), {
      json: true,
      enums: String,
      longs: Number,
      defaults: true,
      oneofs: true,
      arrays: true,
      objects: true,
    });
  }
}
