// Checks that every trimmed message and field in proto/ matches Envoy's own protos: same names, numbers and types.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { messageRoot, PROTO_FILES } from '../../proto/index.ts';

const require = createRequire(import.meta.url);
const xdsDeps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
// Envoy's full protos import google/protobuf/descriptor.proto, which protobufjs resolves only once it is registered as a
// common file (as @grpc/proto-loader does when loaded; proto/ no longer loads it in the sidecar).
protobuf.common('descriptor', (require('protobufjs/google/protobuf/descriptor.json') as { nested: { google: { nested: { protobuf: { nested: protobuf.INamespace['nested'] } } } } }).nested.google.nested.protobuf.nested ?? {});
const includeDirs = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(xdsDeps, d));

function envoyRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (target.startsWith('google/protobuf/')) return target;
    for (const dir of includeDirs) {
      const candidate = join(dir, target);
      try {
        require('node:fs').accessSync(candidate);
        return candidate;
      } catch {
        /* try the next include dir */
      }
    }
    return target;
  };
  root.loadSync(
    PROTO_FILES.filter((f) => f.startsWith('envoy/')),
    { keepCase: true },
  );
  root.resolveAll();
  return root;
}

function collect(ns: protobuf.NamespaceBase, out: protobuf.ReflectionObject[] = []): protobuf.ReflectionObject[] {
  for (const nested of ns.nestedArray) {
    out.push(nested);
    if (nested instanceof protobuf.Namespace) collect(nested, out);
  }
  return out;
}

describe('trimmed Envoy protos', () => {
  const ours = messageRoot();
  const theirs = envoyRoot();
  const envoyObjects = collect(ours.lookup('envoy') as protobuf.Namespace);

  it('covers the messages we serve', () => {
    expect(envoyObjects.length).toBeGreaterThan(40);
  });

  for (const obj of envoyObjects) {
    if (obj instanceof protobuf.Type) {
      it(`${obj.fullName} has Envoy's field numbers and types`, () => {
        const envoyType = theirs.lookupType(obj.fullName);
        for (const field of obj.fieldsArray) {
          const match = envoyType.fields[field.name];
          expect(match, `${obj.fullName}.${field.name} exists in Envoy`).toBeDefined();
          expect(match?.id, `${obj.fullName}.${field.name} number`).toBe(field.id);
          expect(match?.repeated, `${obj.fullName}.${field.name} repeated`).toBe(field.repeated);
          expect(match?.map, `${obj.fullName}.${field.name} map`).toBe(field.map);
          field.resolve();
          match?.resolve();
          const ourType = field.resolvedType?.fullName ?? field.type;
          const envoyFieldType = match?.resolvedType?.fullName ?? match?.type;
          expect(envoyFieldType, `${obj.fullName}.${field.name} type`).toBe(ourType);
          const ourOneof = field.partOf?.name;
          if (ourOneof) expect(match?.partOf?.name, `${obj.fullName}.${field.name} oneof`).toBe(ourOneof);
        }
      });
    } else if (obj instanceof protobuf.Enum) {
      it(`${obj.fullName} has Envoy's enum values`, () => {
        const envoyEnum = theirs.lookupEnum(obj.fullName);
        for (const [name, value] of Object.entries(obj.values)) {
          expect(envoyEnum.values[name], `${obj.fullName}.${name}`).toBe(value);
        }
      });
    }
  }
});
