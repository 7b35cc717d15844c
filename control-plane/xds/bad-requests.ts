// Requests a stream cannot read (malformed protobuf, over the size limit): turned into a stream event with a reason.
import type * as grpc from '@grpc/grpc-js';

const MALFORMED = Symbol('malformed request');

/** What the request deserializer gives for bytes that are not a valid request, instead of throwing. */
export interface MalformedRequest {
  readonly [MALFORMED]: string;
}

/** Why the request could not be decoded, when it is a MalformedRequest. */
export function malformedReason(request: object): string | undefined {
  return (request as Partial<MalformedRequest>)[MALFORMED];
}

/**
 * The ADS service with request decoding errors caught: grpc-js would end the stream with INTERNAL "Error
 * deserializing request", unlogged. The stream gets a MalformedRequest and ends itself with INVALID_ARGUMENT, the
 * reason and a log line (stream-base.ts).
 */
export function withMalformedRequestsCaught(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const [name, method] of Object.entries(service) as [string, grpc.MethodDefinition<object, object>][]) {
    const kind = name === 'DeltaAggregatedResources' ? 'DeltaDiscoveryRequest' : 'DiscoveryRequest';
    const original = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return original(bytes);
        } catch (err) {
          const reason = err instanceof Error ? err.message : String(err);
          const malformed: MalformedRequest = { [MALFORMED]: `a ${bytes.length}-byte message that is not a valid ${kind} (${reason})` };
          return malformed;
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

interface DecoderHolder {
  decoder: { write(data: Buffer): Buffer[]; maxReadMessageLength: number };
}

function decoderHolder(call: object): DecoderHolder | undefined {
  let node: unknown = (call as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && node && typeof node === 'object'; depth++) {
    const decoder = (node as { decoder?: unknown }).decoder as DecoderHolder['decoder'] | undefined;
    if (typeof decoder === 'object' && decoder !== null && typeof decoder.write === 'function' && typeof decoder.maxReadMessageLength === 'number') {
      return node as DecoderHolder;
    }
    node = (node as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

/**
 * Calls `listener` with the reason when the call's message framing fails (a message over
 * grpc.max_receive_message_length): grpc-js then ends the stream with RESOURCE_EXHAUSTED and the error's text, which
 * this rewords to name the limit. Call it in the method handler, after any decoder swap (request-decoder.ts). When
 * grpc-js' call chain has another shape it does nothing and returns false (the status is then grpc-js' own).
 */
export function onFramingError(call: object, kind: string, listener: (reason: string) => void): boolean {
  const holder = decoderHolder(call);
  if (!holder) return false;
  const decoder = holder.decoder;
  const write = decoder.write.bind(decoder);
  decoder.write = (data: Buffer): Buffer[] => {
    try {
      return write(data);
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      const size = /larger than max \((\d+) vs/.exec(detail)?.[1];
      const reason =
        size !== undefined
          ? `${kind} of ${size} bytes is over the control plane's limit of ${decoder.maxReadMessageLength} bytes (grpc.max_receive_message_length)`
          : `${kind} could not be read: ${detail}`;
      listener(reason);
      throw new Error(reason);
    }
  };
  return true;
}
